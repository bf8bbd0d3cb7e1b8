"""The MCP Python SDK 2.x client in one 2026-07-28 scenario, for test/protocol-2026.test.mjs.

    python client.py <url> <scenario> [argument]

The bearer token, if any, comes from the MCP_TOKEN environment variable (never argv).
The client connects with mode="auto": it probes `server/discover` and must end up on
2026-07-28 (anything else is an error). Prints one JSON object on stdout:
{"ok": true, "protocolVersion": ..., "result": ..., "exchanges": [...]} or
{"ok": false, "error": ..., "type": ..., "exchanges": [...]}, where `exchanges` lists every
HTTP answer the client got as {"mcpMethod", "status", "wwwAuthenticate", "sessionId"}
(the SDK reports a refused request as "Server returned an error response", without
the status).

Scenarios:
  discover          the server/discover result
  tools             tools/list (cache_mode="bypass"), by alias: tools, ttlMs, cacheScope
  echo <message>    tools/call echo
  confirm <action>  tools/call confirm_action; the elicitation callback accepts with
                    confirmedBy "python" and the result also lists the elicitations seen
  listen <uri>      subscriptions/listen with resourceSubscriptions [uri], then tools/call
                    touch, then the first event (its uri) within 10 s
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ElicitResult

MODERN = "2026-07-28"


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


async def run(url: str, scenario: str, argument: str | None, exchanges: list[dict[str, Any]]) -> dict[str, Any]:
    token = os.environ.get("MCP_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    elicitations: list[Any] = []

    async def record(response: httpx2.Response) -> None:
        exchanges.append(
            {
                "mcpMethod": response.request.headers.get("mcp-method"),
                "status": response.status_code,
                "wwwAuthenticate": response.headers.get("www-authenticate"),
                "sessionId": response.headers.get("mcp-session-id"),
                "requestSessionId": response.request.headers.get("mcp-session-id"),
            }
        )

    async def on_elicit(_context: Any, params: Any) -> ElicitResult:
        elicitations.append(dump(params))
        return ElicitResult(action="accept", content={"confirmedBy": "python"})

    async with httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(30.0, read=60.0), event_hooks={"response": [record]}
    ) as http:
        client = Client(
            streamable_http_client(url, http_client=http, terminate_on_close=False),
            mode="auto",
            elicitation_callback=on_elicit,
            read_timeout_seconds=30,
        )
        async with client:
            version = client.protocol_version
            if version != MODERN:
                raise RuntimeError(f"negotiated {version!r}, not {MODERN}")
            if scenario == "discover":
                result = dump(await client.session.discover())
            elif scenario == "tools":
                result = dump(await client.list_tools(cache_mode="bypass"))
            elif scenario == "echo":
                result = dump(await client.call_tool("echo", {"message": argument}))
            elif scenario == "confirm":
                called = dump(await client.call_tool("confirm_action", {"action": argument}))
                result = {"call": called, "elicitations": elicitations}
            elif scenario == "listen":
                async with client.listen(resource_subscriptions=[argument]) as sub:
                    honored = dump(sub.honored)
                    await client.call_tool("touch", {})
                    with anyio.fail_after(10):
                        event = await sub.__anext__()
                if not isinstance(event, ResourceUpdated):
                    raise RuntimeError(f"unexpected event {event!r}")
                result = {"honored": honored, "updated": event.uri}
            else:
                raise ValueError(f"unknown scenario {scenario!r}")
            return {"ok": True, "protocolVersion": version, "result": result}


def main() -> None:
    url, scenario = sys.argv[1], sys.argv[2]
    argument = sys.argv[3] if len(sys.argv) > 3 else None
    exchanges: list[dict[str, Any]] = []
    try:
        out = anyio.run(run, url, scenario, argument, exchanges)
    except BaseException as err:  # noqa: BLE001 - reported to the test, which asserts on it
        leaf = err
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        out = {"ok": False, "type": type(leaf).__name__, "error": str(leaf)}
    out["exchanges"] = exchanges
    print(json.dumps(out))


if __name__ == "__main__":
    main()
