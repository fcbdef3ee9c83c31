"""Reports a person or a CI reads without a server: Markdown, JUnit XML, JSON."""

from tunegate.report.files import write_report
from tunegate.report.junit import render_junit
from tunegate.report.markdown import render_markdown

__all__ = ["render_junit", "render_markdown", "write_report"]
