"""Progress bars: tqdm on a terminal, plain periodic lines in a log file."""

import io

from cxrlab.utils.progress import tqdm


def test_a_bar_written_to_a_file_prints_plain_lines_not_carriage_returns():
    log = io.StringIO()  # not a terminal
    bar = tqdm(total=300, desc="dcgan", file=log)
    for _ in range(300):
        bar.update(1)
        bar.set_postfix({"loss": "0.5"})  # a forced refresh each step, as the trainers do
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the start and the end; the updates in between come less than 30 s apart
    assert len(lines) == 2 and "0/300" in lines[0] and "300/300" in lines[-1]


def test_a_bar_prints_a_line_per_interval_and_tqdm_write_still_works(capsys):
    log = io.StringIO()
    for _ in tqdm(range(4), desc="job", file=log, mininterval=0):
        pass
    assert [line.split("|")[0].strip() for line in log.getvalue().splitlines()] == [
        "job:   0%", "job:  25%", "job:  50%", "job:  75%", "job: 100%",
    ]  # fmt: skip
    tqdm.write("epoch 1: val AUC 0.5")
    assert "epoch 1: val AUC 0.5" in capsys.readouterr().out


def test_a_disabled_bar_writes_nothing():
    log = io.StringIO()
    for _ in tqdm(range(3), file=log, disable=True):
        pass
    assert log.getvalue() == ""
