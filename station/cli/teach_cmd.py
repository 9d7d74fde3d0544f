"""`station teach`: queue for adjudication the items whose labels would teach the next model most
(review.teach), beside the truth sample."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, UserOpt, login, open_database, settings_from


def register(app: typer.Typer) -> None:
    @app.command("teach")
    def teach_cmd(
        user: UserOpt,
        n: Annotated[int, typer.Option("--n", min=1, max=10_000, help="How many to queue.")] = 50,
        station: Annotated[
            str | None, typer.Option("--station", help="Default: settings station_name.")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Queue items for adjudication by what their label would teach the next model: lowest
        model confidence, disagreement, rare classes, inputs seen under an open drift alarm.

        A QA lead adjudicates them in `station review` (Awaiting adjudication); each request
        records why it was chosen, and none counts in the escape-rate estimates (only the random
        truth sample does). Their labels reach the next model by `station dataset export` and
        `station model retrain`."""
        from station.teach import queue_teaching

        if fmt not in ("text", "json"):
            raise typer.BadParameter(f"expected text or json, got {fmt!r}", param_hint="--format")
        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        operator = login(engine, user)
        name, picks = queue_teaching(engine, settings, operator=operator, n=n, station_name=station)
        by_reason: dict[str, int] = {}
        for p in picks:
            by_reason[p.reason] = by_reason.get(p.reason, 0) + 1
        if fmt == "json":
            typer.echo(
                json.dumps(
                    {
                        "station": name,
                        "queued": len(picks),
                        "by_reason": by_reason,
                        "items": [{"item_id": p.item_id, "reason": p.reason} for p in picks],
                    },
                    indent=2,
                )
            )
            return
        shown = ", ".join(f"{k} {v}" for k, v in by_reason.items()) or "none"
        typer.echo(f"station {name}: queued {len(picks)} items for adjudication ({shown})")
        if not picks:
            typer.echo("nothing left to queue: every paired item is adjudicated or queued already")
