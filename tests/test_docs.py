"""The course website (`make docs`) in a real browser: headless Chromium, driven by Playwright, reads the built
site from a local http server, with every request off this machine refused (the site must work offline).

For every chapter page (the course's and the exercises'), the front page and three API pages: no console errors,
no failed or external requests, no broken images, no internal link that the server does not answer with 200
(nor a `#fragment` missing from its page); the maths typeset by MathJax (every `.math` element holds an
`mjx-container`, no `mjx-merror`, no raw `$$` or `\\(` left in the visible text), and the sidebar links to every
chapter. Search finds "classifier-free" and lists the guidance chapter.

Skipped, with the command to run, when Playwright, Chromium or the built site is missing.
"""
import functools, http.server, json, os, re, shutil, socketserver, sys, threading, urllib.error, urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("DOCS_SITE", ROOT / "docs" / "_build" / "html"))
NBS = ROOT / "nbs"
CHAPTERS = sorted(NBS.glob("[0-9]*.ipynb"))
EXERCISES = sorted((NBS / "exercises").glob("*.ipynb"))
GUIDANCE = "09_guidance.html"
# Root needs --no-sandbox; without the background-networking flags Chromium floods refused connections.
# Playwright starts every browser with a fresh temporary profile (its own --user-data-dir).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def find_chromium():
    for c in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


def page_path(nb):
    return nb.relative_to(NBS).with_suffix(".html").as_posix()


def has_math(nb):
    "Whether a notebook's markdown holds $...$ or $$...$$ maths (so its page must show typeset equations)."
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    md = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    md = re.sub(r"`[^`\n]*`", "", md)
    return re.search(r"\$\$.+?\$\$|\$[^\s$][^$\n]*?\$", md, re.S) is not None


def _skip_reason():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright missing: `make docs` installs the docs extra (pip install -e '.[docs]')"
    if not find_chromium():
        return "no Chromium: install it with `apt-get install chromium`, then `make docs`"
    if not (SITE / "index.html").exists():
        return f"no built site in {SITE.relative_to(ROOT) if SITE.is_relative_to(ROOT) else SITE}: run `make docs`"
    return None


# CI (.ci/run) installs Chromium and sets DOCS_BROWSER_REQUIRED=1: there a missing piece fails instead of skipping.
@pytest.fixture(scope="module")
def ready():
    reason = _skip_reason()
    if reason:
        if os.environ.get("DOCS_BROWSER_REQUIRED") == "1":
            pytest.fail(f"DOCS_BROWSER_REQUIRED=1 but {reason}")
        pytest.skip(reason)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # the browser dropping a connection it no longer needs
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(ready):
    handler = functools.partial(_Quiet, directory=str(SITE))
    httpd = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(ready):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@functools.lru_cache(maxsize=None)
def fetch(url):
    "(status, body) of a URL on the local server; bodies kept only for HTML pages (fragment checks)."
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read().decode("utf-8", "replace") if url.endswith((".html", "/")) else ""
            return r.status, body
    except urllib.error.HTTPError as e:
        return e.code, ""


class Visit:
    "One page loaded in a fresh browser context: what it logged, failed, or tried to fetch from outside."

    def __init__(self, browser, server, path):
        self.url = server + path
        self.errors, self.external = [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        origin = server.rstrip("/")

        def route(r):
            if r.request.url.startswith(origin) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                self.external.append(r.request.url)
                r.abort()
        self.context.route("**/*", route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))
        resp = self.page.goto(self.url, wait_until="load")
        assert resp and resp.status == 200, f"{path}: the server answered {resp and resp.status}"
        # MathJax typesets after load: wait for its first pass (pages without maths do not load it).
        self.page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise"
                           " ? MathJax.startup.promise.then(() => true) : false")
        self.page.evaluate("""async () => {
            const imgs = [...document.images];
            imgs.forEach(i => i.loading = 'eager');
            await Promise.all(imgs.map(i => i.decode().catch(() => null)));
        }""")

    def close(self):
        self.context.close()


PAGES = ([("index.html", False)] + [(page_path(nb), has_math(nb)) for nb in CHAPTERS + EXERCISES])


def check_page(browser, server, path, math_expected):
    v = Visit(browser, server, path)
    try:
        problems = []
        problems += v.errors
        problems += [f"external request refused (the site must work offline): {u}" for u in v.external]

        broken = v.page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                                 ".map(i => i.getAttribute('src'))")
        problems += [f"broken image: {src}" for src in broken]

        hrefs = v.page.evaluate("() => [...document.querySelectorAll('a[href], link[href]')].map(a => a.href)")
        for href in sorted(set(hrefs)):
            if not href.startswith(server):
                continue
            target, frag = urldefrag(href)
            status, body = fetch(target)
            if status != 200:
                problems.append(f"broken internal link: {href} (HTTP {status})")
            elif frag and body and not re.search(rf'id="{re.escape(frag)}"', body):
                problems.append(f"broken internal link: {href} (no id=\"{frag}\" in {urlparse(target).path})")

        maths = v.page.evaluate("""() => {
            const math = [...document.querySelectorAll('.math')];
            const untypeset = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
            const article = (document.querySelector('article') || document.body).cloneNode(true);
            article.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
            const text = article.textContent;
            const raw = [];
            for (const pat of ['$$', '\\\\(', '\\\\[']) {
                const i = text.indexOf(pat);
                if (i >= 0) raw.push(text.slice(Math.max(0, i - 30), i + 50).replace(/\\s+/g, ' '));
            }
            return {math: math.length, typeset: document.querySelectorAll('mjx-container').length, untypeset, raw,
                    errors: window.MathJax && MathJax.startup && MathJax.startup.document
                        ? Array.from(MathJax.startup.document.math)
                            .filter(m => m.typesetRoot && m.typesetRoot.querySelector('mjx-merror'))
                            .map(m => [m.math, m.typesetRoot.querySelector('mjx-merror').getAttribute('data-mjx-error')])
                        : [...document.querySelectorAll('mjx-merror')].map(e => [e.textContent, e.getAttribute('data-mjx-error')])};
        }""")
        if math_expected and maths["typeset"] == 0:
            problems.append(f"no typeset equations (no mjx-container; {maths['math']} .math elements): is MathJax loaded?")
        if maths["untypeset"]:
            problems.append(f"{len(maths['untypeset'])} of {maths['math']} equations not typeset by MathJax, e.g. "
                            + ", ".join(repr(t) for t in maths["untypeset"][:3]))
        problems += [f"raw TeX delimiters left in the visible text: ...{t}..." for t in maths["raw"]]
        problems += [f"MathJax cannot typeset {tex!r}: {err}" for tex, err in maths["errors"]]

        nav = v.page.evaluate("() => [...document.querySelectorAll('nav.bd-docs-nav a[href]')].map(a => a.href)")
        navpaths = {urlparse(urldefrag(h)[0]).path.lstrip("/") for h in nav}
        missing = [page_path(nb) for nb in CHAPTERS + EXERCISES if page_path(nb) not in navpaths]
        if missing:
            problems.append(f"sidebar lacks links to {missing}")
        assert not problems, f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
    finally:
        v.close()


@pytest.mark.parametrize("path,math_expected", PAGES, ids=[p for p, _ in PAGES])
def test_page(browser, server, path, math_expected):
    check_page(browser, server, path, math_expected)


def test_chapter_titles_in_sidebar(browser, server):
    "The sidebar lists the chapters in course order, titled by each notebook's first `# ` heading."
    v = Visit(browser, server, "index.html")
    try:
        links = v.page.evaluate("() => [...document.querySelectorAll('nav.bd-docs-nav a[href]')]"
                                ".map(a => [a.getAttribute('href'), a.textContent.trim()])")
    finally:
        v.close()
    order = [h.split("#")[0] for h, _ in links]
    chapters = [page_path(nb) for nb in CHAPTERS]
    assert [h for h in order if h in chapters] == chapters, "the sidebar's chapters are not in course order"
    titles = dict((h.split("#")[0], t) for h, t in links)
    for nb in CHAPTERS:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        heading = next(l[2:].strip() for c in cells if c["cell_type"] == "markdown"
                       for l in "".join(c["source"]).splitlines() if l.startswith("# "))
        words = re.sub(r"[`*]", "", heading)
        assert titles[page_path(nb)] == words, f"{nb.name}: sidebar says {titles[page_path(nb)]!r}, heading is {words!r}"


def test_api_reference(browser, server):
    "The API pages: each module's page is reachable, has typeset signatures and links back to its chapter."
    check_page(browser, server, "api/index.html", False)
    status, body = fetch(server + "api/guidance.html")
    assert status == 200, "no API page for diffusion_course.guidance"
    assert "09_guidance.html" in body, "the API page of guidance does not link to its chapter"
    for name in ("GuidedPipeline", "NoisyClassifier"):
        assert f'id="{name.lower()}"' in body, f"the API page of guidance lacks {name}"
    check_page(browser, server, "api/guidance.html", False)
    check_page(browser, server, "api/exercises/guidance.html", False)


def test_search_finds_classifier_free_guidance(browser, server):
    "Search (Sphinx's own, in the browser, from the local index) finds 'classifier-free' in the guidance chapter."
    v = Visit(browser, server, "search.html?q=classifier-free")
    try:
        v.page.wait_for_function("() => { const s = document.querySelector('#search-results p.search-summary');"
                                 " return s && /found|did not match/i.test(s.textContent); }", timeout=30_000)
        results = v.page.evaluate("() => [...document.querySelectorAll('#search-results ul.search li a')]"
                                  ".map(a => a.getAttribute('href'))")
        assert v.errors == [] and v.external == [], v.errors + v.external
    finally:
        v.close()
    assert results, "search for 'classifier-free' found nothing"
    assert any(r.split("#")[0].split("?")[0].endswith(GUIDANCE) for r in results), \
        f"search for 'classifier-free' does not list {GUIDANCE}: {results[:10]}"


def test_build_logged_no_warnings():
    "Sphinx's warnings (a missing image or page, a bad cross-reference) are failures of the site."
    log = SITE.parent / "sphinx-warnings.log"
    if not log.exists():
        pytest.skip("no docs build log: run `make docs`")
    warnings = [l for l in log.read_text(encoding="utf-8").splitlines() if "WARNING" in l or "ERROR" in l]
    assert not warnings, f"{len(warnings)} Sphinx warning(s) in {log.name}:\n  " + "\n  ".join(warnings[:20])


def test_nbdev_config_is_valid():
    "nbdev's own site (`nbdev_preview`, with Quarto) keeps working: nbs/nbdev.yml parses and agrees with settings.ini."
    yaml = pytest.importorskip("yaml")
    import configparser
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    cfg = cfg["DEFAULT"]
    for key in ("title", "description", "branch", "git_url", "doc_host", "doc_baseurl", "doc_path", "nbs_path", "lib_path"):
        assert cfg.get(key), f"settings.ini lacks {key}, which nbdev_preview needs"
    y = yaml.safe_load((NBS / "nbdev.yml").read_text(encoding="utf-8"))
    assert y["project"]["output-dir"] == cfg["doc_path"]
    site = y["website"]
    assert site["site-url"] == cfg["doc_host"] + cfg["doc_baseurl"]
    assert site["repo-url"] == cfg["git_url"] and site["repo-branch"] == cfg["branch"] and site["title"] == cfg["title"]
