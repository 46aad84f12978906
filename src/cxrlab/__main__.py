from cxrlab.cli import app

app(prog_name="cxrlab")
