"""Open a ``report.html`` in a real headless Chromium: screenshot, console errors, visible sections and plots.

    python -m tlbench.benchmarks.tools.render_report results/default/report.html --screenshot report.png \\
        --section "Accuracy and training cost"

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages on file
descriptors 3 and 4, standard library only), with a fresh profile and no network services. The page is loaded
from its file, every image decoded, then checked: no console error, no uncaught exception, no failed load; each
``--section`` heading rendered with a non-empty box (and the page's first ``h2`` within the first screen); every
``<img>`` loaded and drawn with a non-empty box. The full page is captured as a PNG, which must not be blank.
Prints the findings as JSON; exit 0 when every check passes, 1 when one fails, 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: executable names of Chromium, tried in order (Debian: ``apt-get install chromium``)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Chromium flags for a quiet, isolated headless run (no sandbox: CI containers run as root)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
VIEWPORT = (1280, 900)
#: the longest page captured, in CSS pixels (Chromium's texture limit is 16,384)
MAX_CAPTURE_HEIGHT = 16000

#: runs in the page after load: every image decoded, then what is visible
INSPECT = """
(async (sections) => {
  await Promise.all([...document.images].map((img) => img.decode().catch(() => null)));
  const drawn = (el) => {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden' && style.display !== 'none';
  };
  const headings = [...document.querySelectorAll('h1, h2, h3')];
  const firstH2 = document.querySelector('h2');
  return JSON.stringify({
    title: document.title,
    viewportHeight: window.innerHeight,
    firstSectionTop: firstH2 ? firstH2.getBoundingClientRect().top + window.scrollY : null,
    firstSection: firstH2 ? firstH2.textContent.trim() : null,
    sections: sections.map((text) => {
      const el = headings.find((h) => h.textContent.includes(text));
      const next = el ? el.nextElementSibling : null;
      return {text, found: !!el, visible: !!el && drawn(el), content: !!next && drawn(next)};
    }),
    images: [...document.images].map((img) => ({
      alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth, visible: drawn(img),
    })),
  });
})
"""


class RenderError(Exception):
    """Chromium is missing or did not answer: one line for the user."""


@dataclass
class RenderResult:
    """What the browser showed."""

    screenshot: str
    width: int = 0
    height: int = 0
    blank: bool = True
    console_errors: list[str] = field(default_factory=list)
    sections: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    first_section: str | None = None
    first_section_above_fold: bool = False

    @property
    def problems(self) -> list[str]:
        """Every failed check, one line each (empty: the report renders as it should)."""
        found = [f"console: {line}" for line in self.console_errors]
        found += [f"section {s['text']!r} not rendered" for s in self.sections if not (s["visible"] and s["content"])]
        found += [f"image {i['alt']!r} not drawn" for i in self.images if not (i["naturalWidth"] > 0 and i["visible"])]
        if not self.first_section_above_fold:
            found.append(f"the first section ({self.first_section!r}) is not on the first screen")
        if self.blank:
            found.append("the screenshot is blank")
        return found


def find_browser(explicit: str | None = None) -> str:
    """The Chromium executable: ``explicit`` (a path or a name on PATH), else ``$TLBENCH_CHROMIUM``, else the first
    of ``BROWSERS`` on PATH.

    Raises:
        RenderError: none found (the message says how to install it).
    """
    wanted = explicit or os.environ.get("TLBENCH_CHROMIUM")
    for candidate in (wanted,) if wanted else BROWSERS:
        found = shutil.which(candidate)
        if found:
            return found
    if wanted:
        raise RenderError(
            f"browser {wanted!r} is not an executable; expected a Chromium (Debian: apt-get install chromium)"
        )
    raise RenderError(
        f"no Chromium found on PATH (tried {', '.join(BROWSERS)}); install it (Debian: apt-get install chromium) "
        "or pass --browser PATH"
    )


class DevTools:
    """A Chromium process and its DevTools protocol pipe (requests, and the events seen while waiting)."""

    def __init__(self, browser: str, profile: Path, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        to_browser_read, self.to_browser = os.pipe()
        self.from_browser, from_browser_write = os.pipe()

        def child_pipes() -> None:  # pragma: no cover - runs in the forked child
            # fds 3 and 4 are the protocol's; dup2 makes them inheritable, every other fd of ours closes at exec
            read_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)
            os.close(read_end)
            os.close(write_end)

        command = [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}"]
        self.process = subprocess.Popen(
            [*command, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=False,  # Python's own fds are not inheritable (PEP 446); 3 and 4 must stay open
            preexec_fn=child_pipes,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Call ``method`` and return its result (events that arrive meanwhile are kept in ``events``)."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RenderError(f"Chromium refused {method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (already seen or still to come)."""
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.from_browser], [], [], max(0.0, left))
            if not ready:
                raise RenderError(f"Chromium did not answer within {self.timeout_s:.0f} s")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                error = (self.process.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-1:]
                raise RenderError(f"Chromium exited: {error[0] if error else 'no output'}")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        """Ask Chromium to quit; kill it if it does not."""
        try:
            os.write(self.to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        for fd in (self.to_browser, self.from_browser):
            os.close(fd)
        if self.process.stderr is not None:
            self.process.stderr.close()


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Error-level console calls, uncaught exceptions and error log entries (failed loads) among ``events``."""
    lines = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            lines.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            lines.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            lines.append(f"{entry.get('text')} {entry.get('url') or ''}".strip())
    return lines


def is_blank(png: bytes) -> bool:
    """Whether a screenshot shows a single colour (nothing rendered)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        low, high = image.convert("L").getextrema()
    return low == high


def render_report(
    html: Path, screenshot: Path, sections: list[str], browser: str | None = None, timeout_s: float = 60.0
) -> RenderResult:
    """Load ``html`` in headless Chromium, check it (see the module docstring) and save a full-page screenshot.

    Raises:
        RenderError: Chromium is missing, exited or did not answer in ``timeout_s``.
    """
    executable = find_browser(browser)
    with tempfile.TemporaryDirectory(prefix="tlbench-chromium-") as profile:
        tools = DevTools(executable, Path(profile), timeout_s)
        try:
            target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                tools.send(f"{domain}.enable", session=session)
            tools.send("Page.navigate", {"url": Path(html).resolve().as_uri()}, session=session)
            tools.wait_for("Page.loadEventFired")
            found = tools.send(
                "Runtime.evaluate",
                {"expression": f"({INSPECT})({json.dumps(sections)})", "awaitPromise": True, "returnByValue": True},
                session=session,
            )
            page = json.loads(found["result"]["value"])
            size = tools.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            width, height = int(size["width"]), min(int(size["height"]), MAX_CAPTURE_HEIGHT)
            clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
            shot = tools.send(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True, "clip": clip},
                session=session,
            )
            errors = console_errors([e for e in tools.events if e.get("sessionId") == session])
        finally:
            tools.close()
    png = base64.b64decode(shot["data"])
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(png)
    top = page["firstSectionTop"]
    return RenderResult(
        screenshot=str(screenshot),
        width=width,
        height=height,
        blank=is_blank(png),
        console_errors=errors,
        sections=page["sections"],
        images=page["images"],
        first_section=page["firstSection"],
        first_section_above_fold=top is not None and top < page["viewportHeight"],
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: check one report, print the findings as JSON."""
    parser = argparse.ArgumentParser(description="Render a tlbench report.html in headless Chromium and check it.")
    parser.add_argument("html", type=Path, help="the report.html to open")
    parser.add_argument("--screenshot", type=Path, default=Path("report.png"), help="PNG to write (full page)")
    parser.add_argument(
        "--section", action="append", default=[], help="a heading (or part of it) that must be rendered; repeatable"
    )
    parser.add_argument("--browser", default=None, help="the Chromium executable (default: found on PATH)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each browser answer")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"render_report: error: {str(args.html)!r} is not a file; expected a report.html", file=sys.stderr)
        return 2
    try:
        result = render_report(args.html, args.screenshot, args.section, args.browser, args.timeout)
    except RenderError as exc:
        print(f"render_report: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**asdict(result), "problems": result.problems}, indent=1))
    return 1 if result.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
