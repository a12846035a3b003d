"""Stage 9, report: metrics.json, predictions.jsonl and report.md of a run."""

from tasktune.report.files import write_json, write_jsonl, write_report

__all__ = ["write_json", "write_jsonl", "write_report"]
