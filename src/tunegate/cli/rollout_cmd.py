"""``tunegate rollout promote|set|status|history|rollback``: release control over a gateway's routes.

Every change goes through :func:`tunegate.gateway.release.set_share` and becomes an audit event
(who, when, from → to, verdict hash). ``promote`` refuses a verdict that does not allow the arm
(BLOCK / INCONCLUSIVE, another candidate, baseline or dataset, a verdict the store never recorded)
and names the rule that blocked; it exits 2 then. Running gateways pick changes up by themselves.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.errors import UserError

__all__ = ["register", "rollout_group"]


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return os.environ.get("TUNEGATE_ACTOR") or getpass.getuser()
    except Exception:
        return "unknown"


def _load(obj: common.Context, config: str, store: Any) -> tuple[Any, dict[str, dict[str, str]]]:
    from tunegate.gateway.config import load_gateway_config
    from tunegate.gateway.service import resolve_specs

    cfg, specs = load_gateway_config(config)
    resolved = resolve_specs(store, specs)
    hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in resolved.items()}
    return cfg.model_copy(update={"candidate_hashes": hashes}), hashes


def _arm(cfg: Any, route: str, arm: str | None) -> str:
    r = cfg.route(route)
    if r is None:
        raise UserError(f"no route {route!r}; routes: {', '.join(x.name for x in cfg.routes)}", field="--route")
    if arm is not None:
        return arm
    others = [a for a in r.arms if a != r.baseline]
    if len(others) != 1:
        raise UserError(f"route {route!r} has {len(others)} candidate arms ({', '.join(others)}); name one with --arm",
                        field="--arm")
    return str(others[0])


@click.group("rollout")
def rollout_group() -> None:
    """Release control: move a route's traffic only on a verdict, with an audit trail."""


_config = click.option("--config", "config", required=True, type=click.Path(dir_okay=False),
                       help="gateway.yaml (arms and their candidates).")
_reason = click.option("--reason", "-m", required=True, help="Why (kept in the audit record).")
_who = click.option("--actor", default=None, help="Who (default $TUNEGATE_ACTOR or the login name).")


@rollout_group.command("promote")
@_config
@click.option("--route", required=True)
@click.option("--arm", default=None, help="Candidate arm (default: the route's only non-baseline arm).")
@click.option("--verdict", "verdict", required=True, type=click.Path(dir_okay=False),
              help="verdict.json written by `tunegate gate`.")
@click.option("--percent", type=click.FloatRange(0, 100), required=True, help="Share of sticky users, 0-100.")
@_reason
@_who
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def promote_cmd(obj: common.Context, config: str, route: str, arm: str | None, verdict: str, percent: float,
                reason: str, actor: str | None, as_json: bool) -> None:
    """Give ARM PERCENT% of ROUTE's users, if the verdict allows it."""
    from tunegate.gateway.release import promote

    with obj.store() as store:
        cfg, hashes = _load(obj, config, store)
        arm = _arm(cfg, route, arm)
        check, event = promote(store, cfg, hashes, route, arm, verdict, percent, _actor(actor), reason)
    if as_json:
        common.print_json({"check": check.__dict__, "event": event})
        return
    common.out_console().print(f"[green]promoted[/] {route}/{arm}: {event['from_percent']:g}% → "
                               f"{event['to_percent']:g}% ({check.message}; verdict {check.verdict_hash[:19]}…)")


@rollout_group.command("set")
@click.option("--route", required=True)
@click.option("--arm", required=True)
@click.option("--percent", type=click.FloatRange(0, 100), required=True)
@_reason
@_who
@click.pass_obj
def set_cmd(obj: common.Context, route: str, arm: str, percent: float, reason: str, actor: str | None) -> None:
    """Ramp or drain an arm that a verdict already released (raising a never-released arm is refused)."""
    from tunegate.gateway.release import set_share

    with obj.store() as store:
        ev = set_share(store, route, arm, percent, _actor(actor), reason)
    common.out_console().print(f"{route}/{arm}: {ev['from_percent']:g}% → {ev['to_percent']:g}%")


@rollout_group.command("rollback")
@click.option("--route", required=True)
@click.option("--arm", default=None, help="Only this arm (default: every arm with traffic).")
@_reason
@_who
@click.pass_obj
def rollback_cmd(obj: common.Context, route: str, arm: str | None, reason: str, actor: str | None) -> None:
    """Send all of ROUTE's traffic back to its baseline (shares to 0%, audited)."""
    from tunegate.gateway.release import rollback

    with obj.store() as store:
        events = rollback(store, route, _actor(actor), reason, {"source": "cli"}, arm=arm)
    for ev in events:
        common.out_console().print(f"[yellow]rolled back[/] {route}/{ev['arm']}: {ev['from_percent']:g}% → 0%")


@rollout_group.command("status")
@_config
@click.option("--route", default=None)
@click.option("--gateway", "gateway_url", default=None, metavar="URL",
              help="A running gateway (http://127.0.0.1:8080): also show its release controller's live state "
                   "(evidence at the step, scoring backlog and drops, mirror counters, latest decision).")
@click.option("--api-key", envvar="TUNEGATE_API_KEY", default=None, help="Gateway key (env TUNEGATE_API_KEY).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status_cmd(obj: common.Context, config: str, route: str | None, gateway_url: str | None, api_key: str | None,
               as_json: bool) -> None:
    """Effective share of every arm (0 when its candidate changed since it was released)."""
    from tunegate.gateway.release import overview

    with obj.store() as store:
        cfg, hashes = _load(obj, config, store)
        data = [r for r in overview(store, cfg, hashes, history=5) if route is None or r["route"] == route]
    live = None
    if gateway_url is not None:
        live = [r for r in _live_release(gateway_url, api_key) if route is None or r["route"] == route]
    if as_json:
        common.print_json({"config_hash": cfg.hash, "routes": data} | ({"release": live} if live is not None else {}))
        return
    t = Table("route", "arm", "share", "candidate", "released by verdict", "requests", "note")
    for r in data:
        for a in r["arms"]:
            tr = a["traffic"] or {}
            note = "baseline" if a["baseline"] else ("STALE: candidate changed, no traffic" if a["stale"] else "")
            t.add_row(r["route"], a["arm"], f"{a['percent']:g}%", a["candidate_hash"][:17],
                      (a["verdict_hash"] or "")[:19], str(tr.get("requests", 0)), note)
    common.out_console().print(t)
    for block in _release_tables(live or []):
        common.out_console().print(block)


def _live_release(url: str, api_key: str | None) -> list[dict[str, Any]]:
    """``GET /v1/rollout`` of a running gateway: its ``release`` list (empty without a controller)."""
    import httpx

    base = url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base}/v1/rollout", headers=headers, timeout=10.0)
    except httpx.HTTPError as e:
        raise UserError(f"cannot reach the gateway at {base}: {type(e).__name__}: {e}", field="--gateway") from None
    if resp.status_code != 200:
        raise UserError(f"{base}/v1/rollout answered {resp.status_code}: {resp.text[:200]}", field="--gateway")
    release = resp.json().get("release")
    return list(release) if isinstance(release, list) else []


def _release_tables(live: list[dict[str, Any]]) -> list[Table]:
    """The controller's live state, one two-column block per watched route (readable at 80 columns):
    where the rollout stands, the evidence it still lacks, and what the backlog bounds dropped."""
    out = []
    for r in live:
        need, have = r["needs"], r["at_step"]
        steps = " → ".join(f"{p:g}" for p in r["steps"])
        step = "ROLLED BACK" if r["rolled_back"] else f"{r['step'] + 1} of {len(r['steps'])} ({steps} %)"
        if r["excluded_cohorts"]:
            step += f"; cohorts rolled back: {', '.join(r['excluded_cohorts'])}"
        sc, m = r["scoring"], r["mirror"]
        last = r["last_decision"]
        t = Table(show_header=False, box=None, title=f"release controller (live): {r['route']}/{r['arm']}",
                  title_justify="left")
        t.add_row("step", step)
        t.add_row("at this step", f"pairs {have['pairs']}/{need['min_pairs']}, candidate requests "
                                  f"{have['requests']}/{need['min_requests']}, {have['seconds']:.0f}/"
                                  f"{need['min_duration_s']:g} s")
        t.add_row("scoring", f"backlog {sc['pending']}/{sc['max_pending']}, dropped {sc['dropped']}")
        t.add_row("mirror", "off" if m is None else f"{m['share']:.0%} of baseline traffic: {m['enqueued']} queued, "
                  f"{m['shadow_ok']} ok, {m['shadow_failed']} failed, dropped {m['dropped']}")
        t.add_row("latest decision", "none yet" if last is None else f"{last['action']}: {last['reason']}")
        out.append(t)
    return out


@rollout_group.command("history")
@click.option("--route", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history_cmd(obj: common.Context, route: str | None, limit: int, as_json: bool) -> None:
    """Audit trail of rollout changes, newest first."""
    from tunegate.store.release import rollout_events

    with obj.store() as store:
        events = rollout_events(store, route, limit)
    if as_json:
        common.print_json(events)
        return
    t = Table("#", "when", "route/arm", "action", "from → to", "who", "verdict", "reason")
    for e in events:
        t.add_row(str(e["seq"]), e["created_at"], f"{e['route']}/{e['arm']}", e["action"],
                  f"{e['from_percent']:g}% → {e['to_percent']:g}%", e["actor"], (e["verdict_hash"] or "")[:19],
                  e["reason"])
    common.out_console().print(t)


def register(cli: click.Group) -> None:
    cli.add_command(rollout_group)
