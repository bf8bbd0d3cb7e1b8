"""The MCP Python SDK 2.x client signing in by itself, for test/as-python-client.test.mjs.

    python oauth_client.py <url> [--metadata-url <https url>] [--step-up] [--pause <seconds>]

The SDK's own OAuthClientProvider (mcp.client.auth, httpx2-based) does the whole OAuth
flow: 401, discovery, the client registered (DCR) or known by its metadata document URL
(--metadata-url), PKCE, the token request, refresh and step-up. Its redirect handler
cannot open a browser here: it prints {"authorize": <url>} on stdout, one line, and the
Node test drives the browser. Its callback handler waits for that browser at this
process's own loopback redirect URI (RFC 8252 §7.3) and hands the SDK code, state and iss.

Then: tools/list and tools/call echo; with --step-up also tools/call get-env, which needs a
scope the first token lacks (403 insufficient_scope: the SDK authorizes again); with
--pause, sleeps that long and calls echo again (the access token has expired by then: the
SDK refreshes it before sending). Prints one
JSON object last: {"ok": true, "tools": [...], "echo": ..., "getEnv": ..., "tokens": [...]}
or {"ok": false, "error": ..., "type": ...}, where `tokens` are the access tokens the SDK
stored, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.issued: list[str] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.issued.append(tokens.access_token)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Loopback:
    """A one-route HTTP listener: each GET /callback?... resolves the next waiter."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1")
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.split(" ")
            target = urlsplit(parts[1]) if len(parts) >= 2 else urlsplit("/")
            if target.path != "/callback":
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
            body = b"<!doctype html><title>Signed in</title><p>You can close this window.</p>"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            await self.queue.put({k: v[0] for k, v in parse_qs(target.query).items()})
        finally:
            await writer.drain()
            writer.close()


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loopback = Loopback()
    await loopback.start()
    storage = MemoryStorage()

    async def redirect_handler(url: str) -> None:
        emit({"authorize": url})

    async def callback_handler() -> AuthorizationCodeResult:
        params = await loopback.queue.get()
        if "error" in params:
            raise RuntimeError(f"authorization refused: {params.get('error')} {params.get('error_description', '')}")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    auth = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="Python Notes",
            redirect_uris=[loopback.redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=args.metadata_url,
    )
    out: dict[str, Any] = {"ok": True, "redirectUri": loopback.redirect_uri}
    async with httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0, read=60.0)) as http:
        client = Client(streamable_http_client(args.url, http_client=http), mode="legacy", read_timeout_seconds=60)
        async with client:
            tools = await client.list_tools()
            out["tools"] = [tool.name for tool in tools.tools]
            out["echo"] = text_of(await client.call_tool("echo", {"message": "hello-python"}))
            if args.pause:
                await anyio.sleep(args.pause)
                out["echoAfterPause"] = text_of(await client.call_tool("echo", {"message": "hello-again"}))
            if args.step_up:
                result = await client.call_tool("get-env", {})
                out["getEnv"] = {"isError": bool(result.is_error), "text": text_of(result)[:2000]}
    out["clientId"] = storage.client_info.client_id if storage.client_info else None
    out["tokens"] = storage.issued
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--metadata-url")
    parser.add_argument("--step-up", action="store_true")
    parser.add_argument("--pause", type=float)
    args = parser.parse_args()
    try:
        out = anyio.run(run, args)
    except BaseException as error:  # noqa: BLE001 - the test reads whatever went wrong
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        out = {"ok": False, "error": str(error), "type": type(error).__name__}
    emit(out)
    sys.exit(0 if out.get("ok") else 1)


if __name__ == "__main__":
    main()
