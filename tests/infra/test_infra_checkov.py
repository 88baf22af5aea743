"""checkov on every environment's synthesized templates: zero failures outside the reviewed list.

The reviewed list is `infra/checkov-acknowledged.yaml`: each entry names a check, a stack and a
resource (logical id), with the reason that is true for it. A new failure fails the test, and so
does an entry that matches nothing any more (stale), so the list cannot rot.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Synth

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = Path(sys.executable).parent / "checkov"
ACKNOWLEDGED = ROOT / "infra" / "checkov-acknowledged.yaml"
STAGES = ("Dev", "Staging", "Prod")
ENTRY_KEYS = {"check", "stack", "resource", "reason"}


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    """checkov's CloudFormation report on `directory` (offline: no download of Prisma Cloud metadata)."""
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make setup-cdk`"
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "cloudformation",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # 0: no failures, 1: failures (read from the report); anything else: checkov did not run.
    assert proc.returncode in (0, 1), f"checkov exited {proc.returncode}: {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    # With nothing to scan checkov prints a bare summary, without check_type or results.
    assert all("check_type" in r for r in reports), (
        f"checkov found no template to scan in {directory}: {report}"
    )
    assert [r["check_type"] for r in reports] == ["cloudformation"], [r.get("check_type") for r in reports]
    return reports


def stack_of(file_path: str) -> tuple[str, str]:
    """('Dev', 'Data') from checkov's '/assembly-Dev/DevDataF961E460.template.json'."""
    match = re.fullmatch(r"/?assembly-(\w+)/\1(\w+?)[0-9A-F]{8}\.template\.json", file_path)
    assert match, f"unexpected template path {file_path!r}"
    return match.group(1), match.group(2)


def failures(reports: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every failed check as {check, name, stage, stack, resource}."""
    found = []
    for report in reports:
        for failed in report["results"]["failed_checks"]:
            stage, stack = stack_of(failed["file_path"])
            found.append(
                {
                    "check": failed["check_id"],
                    "name": failed["check_name"],
                    "stage": stage,
                    "stack": stack,
                    "resource": failed["resource"],
                }
            )
    return found


def acknowledged() -> list[dict[str, str]]:
    entries: list[dict[str, str]] = yaml.safe_load(ACKNOWLEDGED.read_text())
    return entries


def matches(entry: dict[str, str], failure: dict[str, str]) -> bool:
    return all(entry[key] == failure[key] for key in ("check", "stack", "resource"))


@pytest.fixture(scope="session")
def checkov_reports(synth: Synth) -> list[dict[str, Any]]:
    return run_checkov(synth.outdir)


def test_checkov_scanned_every_template(synth: Synth, checkov_reports: list[dict[str, Any]]) -> None:
    summary = checkov_reports[0]["summary"]
    assert summary["parsing_errors"] == 0, summary
    # Suppressions live in the reviewed list only, never as checkov:skip metadata in a template.
    assert summary["skipped"] == 0, summary
    scanned = {stack_of(c["file_path"]) for c in checkov_reports[0]["results"]["passed_checks"]}
    expected = {(stage, stack) for stage in STAGES for stack in synth.templates[stage]}
    # Every stack with a resource checkov has checks for (all five in each environment).
    assert scanned == expected, expected ^ scanned


def test_checkov_has_no_unacknowledged_failures(checkov_reports: list[dict[str, Any]]) -> None:
    entries = acknowledged()
    new = [f for f in failures(checkov_reports) if not any(matches(e, f) for e in entries)]
    assert new == [], (
        "checkov failures not in infra/checkov-acknowledged.yaml (fix the resource, or add an entry "
        "with the reason that is true for it):\n" + json.dumps(new, indent=1)
    )


def test_checkov_acknowledgements_are_reviewed_and_not_stale(checkov_reports: list[dict[str, Any]]) -> None:
    found = failures(checkov_reports)
    for entry in acknowledged():
        assert set(entry) == ENTRY_KEYS, f"{entry}: an entry has exactly {sorted(ENTRY_KEYS)}"
        assert len(entry["reason"].split()) >= 8, f"{entry}: give the reason in a sentence"
        hits = [f for f in found if matches(entry, f)]
        assert hits, f"stale acknowledgement (matches no failure any more; remove it): {entry}"


def test_checkov_really_fails_an_insecure_template(tmp_path: Path) -> None:
    (tmp_path / "assembly-Dev").mkdir()
    template = {"Resources": {"Open": {"Type": "AWS::S3::Bucket", "Properties": {}}}}
    (tmp_path / "assembly-Dev" / "DevProbe0123ABCD.template.json").write_text(json.dumps(template))
    found = {(f["check"], f["resource"]) for f in failures(run_checkov(tmp_path))}
    for check in ("CKV_AWS_18", "CKV_AWS_21"):  # no access logging, no versioning
        assert (check, "AWS::S3::Bucket.Open") in found, found
