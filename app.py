"""CDK entry point: `npx cdk synth|deploy [-c env=dev|staging|prod]` (see docs/infra.md)."""

from __future__ import annotations

import sys

from infra.application import build_app
from infra.settings import SettingsError


def main() -> None:
    """Synthesize the app; a bad setting stops synth with one sentence naming it."""
    try:
        app = build_app()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    app.synth()


if __name__ == "__main__":
    main()
