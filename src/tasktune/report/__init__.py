"""Stage 9, report: metrics.json, predictions.jsonl, report.md and its plots of a run."""

from tasktune.report.files import informative_errors, read_log, write_json, write_jsonl, write_report

__all__ = ["write_json", "write_jsonl", "write_report", "read_log", "informative_errors"]
