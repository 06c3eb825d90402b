"""The payer's pages: `GET /paystep/<id>` (the request and a Pay button) and the pages after paying."""

from __future__ import annotations

from html import escape


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:48em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    ).encode()


def request_page(request: dict) -> bytes:
    rows = "".join(
        f"<tr><td>{escape(str(line['ServiceID']))}</td><td>{escape(str(line['ServiceOrderID']))}</td>"
        f"<td>{escape(str(line['Qty']))}</td></tr>"
        for line in request["Orders"]
    )
    request_id = escape(str(request["RequestID"]))
    summary = (
        f"<p>Request <b id='request-id'>{request_id}</b>, payer client {escape(str(request['ClientID']))}, "
        f"status <b id='status'>{escape(request['Status'])}</b>.</p>"
        "<table><tr><th>ServiceID</th><th>ServiceOrderID</th><th>Qty</th></tr>"
        f"{rows}<tr><th colspan='2'>Total</th><th id='sum'>{escape(request['Sum'])}</th></tr></table>"
    )
    if request["Status"] == "paid":
        return _page(f"Request {request_id} is paid", summary + f"<p>Paid {escape(request['PaidAmount'])}.</p>")
    form = (
        f"<form method='post' action='/paystep/{request_id}'>"
        f"<p><label>Amount <input name='amount' id='amount' value='{escape(request['Sum'])}'></label></p>"
        "<p><button type='submit' id='pay'>Pay</button></p></form>"
    )
    return _page(f"Pay request {request_id}", summary + form)


def paid_page(request: dict) -> bytes:
    return _page(
        f"Request {request['RequestID']} is paid",
        f"<p id='paid'>Paid <b>{escape(request['PaidAmount'])}</b> of {escape(request['Sum'])}. Thank you.</p>",
    )


def message_page(title: str, message: str) -> bytes:
    return _page(title, f"<p id='message'>{escape(message)}</p>")
