"""Exception types. Every error names the file or option at fault and, where there is one, the fix."""


class CxrlabError(Exception):
    """Base class of every error cxrlab raises on purpose."""


class ImageReadError(CxrlabError):
    """An image file could not be turned into pixels.

    Attributes:
        reason: a short, stable reason code written to ``rejects.csv``
            (``missing``, ``unreadable``, ``decompression bomb``,
            ``unsupported DICOM encoding``).
        detail: the decoder's own message.
    """

    def __init__(self, path: object, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        message = f"cannot read {self.path}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class DatasetError(CxrlabError):
    """A dataset, label file or spec is malformed or inconsistent."""
