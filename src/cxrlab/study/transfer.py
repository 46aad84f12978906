"""The report's "Will it transfer?" section of a leave-site-out study.

Being written (issue 23): :func:`transfer_section` returns the section's HTML, or ""
for a study whose ``evaluation`` is not ``leave-site-out``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxrlab.study.report import Study


def transfer_section(study: Study) -> str:
    """HTML of the "Will it transfer?" section, "" when the study has no
    leave-site-out evaluation."""
    return ""
