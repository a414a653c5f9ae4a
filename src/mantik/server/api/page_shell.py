"""The shell of mantik's own pages: one look, and headers that keep them from being framed or
running any script but their own."""

from __future__ import annotations

import secrets
from html import escape

from fastapi.responses import HTMLResponse

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f6f8;margin:0;color:#1c2024}
main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;
box-shadow:0 1px 4px #0002}main.wide{max-width:72rem;margin:1.5rem auto}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;background:#0b6bcb;
color:#fff;border:0;border-radius:4px;cursor:pointer}.error{color:#b00020}
.hint{color:#555;font-size:.85rem}a{color:#0b6bcb}
nav{display:flex;gap:1rem;align-items:center;margin-bottom:1rem;font-size:.95rem}
nav .brand{font-weight:600;margin-right:auto}nav form{margin:0}
nav button,.small{margin:0;width:auto;padding:.3rem .7rem;font-size:.85rem}
button.danger{background:#b00020}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{color:#555;font-weight:600}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:.1rem .45rem;border-radius:3px;font-size:.8rem;
font-weight:600;background:#e3e6ea}.SCHEDULED{background:#fff3c4}.RUNNING{background:#cfe3ff}
.FINISHED{background:#d3f2d9}.FAILED{background:#ffd6d6}.KILLED{background:#e6dcf5}
.filters{display:flex;gap:.6rem;align-items:end;flex-wrap:wrap;margin-bottom:1rem}
.filters label{margin:0 0 .2rem;font-size:.85rem}.filters select{padding:.35rem}
pre.log{background:#111;color:#e6e6e6;padding:.8rem;border-radius:4px;height:24rem;
overflow:auto;white-space:pre-wrap;word-break:break-all;font-size:.8rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;font-size:.9rem}
dt{color:#555}dd{margin:0}svg text{font-size:10px;fill:#555}
"""


def page(
    title: str, body: str, status_code: int = 200, *, wide: bool = False, script: str = ""
) -> HTMLResponse:
    """``body`` (HTML, escaped by the caller) in the shell; ``script`` runs with a fresh nonce,
    and nothing else does (no inline handlers, nothing from elsewhere)."""
    nonce = secrets.token_urlsafe(16)
    tag = f"<script nonce={nonce}>{script}</script>" if script else ""
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · "
        f"mantik</title><meta name=viewport content='width=device-width'>"
        f"<style>{_STYLE}</style></head><body><main{' class=wide' if wide else ''}>"
        f"{body}</main>{tag}</body></html>"
    )
    headers = {
        "Cache-Control": "no-store",
        # Pages with buttons must not be framed (clickjacking).
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ),
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(html, status_code=status_code, headers=headers)
