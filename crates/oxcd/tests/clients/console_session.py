"""Drives oxcd's web console in headless Chromium (Selenium and chromedriver), as a user would.

Arguments: the console's URL, etcdctl's path and an endpoint for it, the pid of a member to kill,
a directory for screenshots, the user:password to log in with, and a second user:password whose
role may only read keys under /app/. Prints one JSON object per step on stdout
("step" names it); any failure raises, so the exit code is not 0.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

url, etcdctl, endpoint, victim, shots, user, viewer = sys.argv[1:8]
name, password = user.split(":", 1)


def report(step, **kw):
    print(json.dumps({"step": step, **kw}), flush=True)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def wait_for(what, f, timeout=10.0):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = f()
            if v:
                return v
        except (NoSuchElementException, StaleElementReferenceException) as e:
            last = e
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what} ({last!r}); page: {driver.find_element(By.TAG_NAME, 'main').text[:2000]}")


def accept_confirm():
    def alert():
        try:
            return driver.switch_to.alert
        except NoAlertPresentException:
            return None

    a = wait_for("a confirmation", alert)
    text = a.text
    a.accept()
    return text


def shot(name):
    driver.save_screenshot(os.path.join(shots, name + ".png"))


opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    # Log in: auth is on, so the console asks first.
    driver.get(url + "/ui/")
    wait_for("the login form", lambda: driver.find_element(By.ID, "login-form"))
    driver.find_element(By.ID, "login-name").send_keys(name)
    driver.find_element(By.ID, "login-password").send_keys(password)
    shot("login")
    driver.find_element(By.ID, "login-submit").click()
    wait_for("the user's name", lambda: name in driver.find_element(By.ID, "who").text)
    rows = wait_for(
        "three members up",
        lambda: [r for r in driver.find_elements(By.CSS_SELECTOR, "#members tbody tr") if r.get_attribute("data-state") == "up"]
        if len(driver.find_elements(By.CSS_SELECTOR, "#members tbody tr[data-state=up]")) == 3
        else None,
    )
    leaders = driver.find_elements(By.CSS_SELECTOR, "#members .badge.leader")
    # Let the charts draw a few points.
    time.sleep(3)
    shot("cluster")
    report("cluster", members=len(rows), leaders=len(leaders))

    # Browse to a key through the tree, from the root.
    driver.get(url + "/ui/#/keys")
    for key in ["/", "/app/", "/app/config"]:
        link = wait_for(key, lambda: driver.find_element(By.CSS_SELECTOR, f'#tree a[data-key="{key}"]'))
        link.click()
    value = wait_for("the value", lambda: driver.find_element(By.ID, "value").text)
    old_rev = int(driver.find_element(By.ID, "mod-rev").text)
    report("browse", value=json.loads(value), pretty="\n" in value, revision=old_rev)

    # Edit it: a confirmation, then the new revision and a diff against the previous one.
    driver.find_element(By.ID, "edit").click()
    area = driver.find_element(By.ID, "edit-value")
    area.clear()
    area.send_keys('{"replicas": 5, "image": "web:2"}')
    driver.find_element(By.ID, "save").click()
    confirm = accept_confirm()
    written = wait_for("the new revision", lambda: driver.find_element(By.ID, "written").text)
    new_rev = int(driver.find_element(By.ID, "mod-rev").text)
    diff = [
        (d.get_attribute("class"), d.text)
        for d in wait_for("the diff", lambda: driver.find_elements(By.CSS_SELECTOR, "#diff div"))
    ]
    history = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#history tr")]
    driver.find_element(By.CSS_SELECTOR, '.tabs button[data-mode="yaml"]').click()
    yaml = driver.find_element(By.ID, "value").text
    driver.find_element(By.CSS_SELECTOR, '.tabs button[data-mode="hex"]').click()
    hexdump = driver.find_element(By.ID, "value").text
    driver.find_element(By.CSS_SELECTOR, '.tabs button[data-mode="json"]').click()
    shot("key")
    report("renderings", yaml=yaml, hex=hexdump.splitlines()[0])
    report("edit", confirm=confirm, written=written, revision=new_rev, previous=old_rev, diff=diff, history=history)

    # A Kubernetes object is labelled by its apiVersion and kind.
    driver.get(url + "/ui/#/key?k=" + b64("/registry/deployments/default/web"))
    label = wait_for("the kind", lambda: driver.find_element(By.ID, "k8s-kind").text)
    report("k8s", label=label)

    # A live watch: a put by etcdctl shows up.
    driver.get(url + "/ui/#/watch?p=/app/")
    wait_for("the watch", lambda: driver.find_element(By.ID, "watch-state").text == "watching")
    put = subprocess.run(
        [etcdctl, "--endpoints", endpoint, "--user", user, "put", "/app/live", "from-etcdctl"],
        capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
    )
    assert put.returncode == 0, put.stderr
    acked = time.time()
    wait_for(
        "the event",
        lambda: any("/app/live" in r.text and "from-etcdctl" in r.text for r in driver.find_elements(By.CSS_SELECTOR, "#events tr")),
        timeout=5,
    )
    seen = time.time() - acked

    def ctl(*args):
        r = subprocess.run([etcdctl, "--endpoints", endpoint, "--user", user, *args],
                           capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"})
        assert r.returncode == 0, r.stderr

    def rows():
        return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#events tr")]

    # Paused, events are held; resumed, they show.
    driver.find_element(By.ID, "watch-pause").click()
    ctl("put", "/app/held", "x")
    held = wait_for("the held event", lambda: (lambda t: t if "held" in t else None)(driver.find_element(By.ID, "watch-state").text))
    while_paused = [r for r in rows() if "/app/held" in r]
    driver.find_element(By.ID, "watch-pause").click()
    wait_for("the released event", lambda: any("/app/held" in r for r in rows()))
    # Filters: deletes only, then a key's part.
    ctl("del", "/app/held")
    wait_for("the delete", lambda: any("DELETE" in r for r in rows()))
    driver.find_element(By.ID, "f-put").click()
    only_deletes = rows()
    driver.find_element(By.ID, "f-put").click()
    driver.find_element(By.ID, "f-key").send_keys("live")
    only_live = rows()
    shot("watch")
    report("watch", seconds=seen, held=held, while_paused=while_paused, only_deletes=only_deletes, only_live=only_live)

    # Delete a prefix: the count to confirm, then the revision.
    driver.get(url + "/ui/#/keys?p=" + b64("/tmp/"))
    wait_for("the prefix", lambda: driver.find_element(By.ID, "del-prefix").get_attribute("value") == "/tmp/")
    driver.find_element(By.ID, "del-submit").click()
    asked = accept_confirm()
    deleted = wait_for("the deletion", lambda: driver.find_element(By.ID, "del-result").text)
    report("delete-prefix", confirm=asked, result=deleted)

    # Leases, locks and elections.
    driver.get(url + "/ui/#/leases")
    lease_rows = wait_for("a lease", lambda: driver.find_elements(By.CSS_SELECTOR, "#leases tr"))
    report("leases", rows=[r.text for r in lease_rows])
    driver.get(url + "/ui/#/locks")
    holders = wait_for("a lock holder", lambda: driver.find_elements(By.CSS_SELECTOR, "#locks .card"))
    shot("locks")
    report("locks", cards=[c.text for c in holders])

    # Revoke the lease: its keys and the lock it holds go.
    driver.get(url + "/ui/#/leases")
    wait_for("a lease", lambda: driver.find_elements(By.CSS_SELECTOR, "#leases tr"))
    driver.find_element(By.CSS_SELECTOR, "#leases button.danger").click()
    asked = accept_confirm()
    revoked = wait_for("the revocation", lambda: driver.find_element(By.CSS_SELECTOR, "h2 .notice").text)
    report("revoke", confirm=asked, result=revoked)

    # 100,000 keys: a full page load straight to them, and the page's own time for the listing.
    driver.get("about:blank")
    driver.get(url + "/ui/#/keys?p=" + b64("/bulk/"))
    wait_for("the first page", lambda: driver.execute_script("return window.oxcdRenderedAt"))
    first = driver.execute_script("return window.oxcdRenderedAt")
    listing = driver.execute_script("return window.oxcdLastRender")
    entries = len(driver.find_elements(By.CSS_SELECTOR, "#tree li"))
    top = driver.find_element(By.CSS_SELECTOR, "#tree li a").text
    driver.find_element(By.ID, "next-page").click()
    second = wait_for(
        "the second page", lambda: (lambda t: t if t != top else None)(driver.find_element(By.CSS_SELECTOR, "#tree li a").text)
    )
    report("bulk", first_render_ms=first, listing_ms=listing, entries=entries, first=top, second=second)

    # Another user sees what their role allows, and nothing else.
    driver.find_element(By.ID, "logout").click()
    wait_for("the login form", lambda: driver.find_element(By.ID, "login-form"))
    driver.find_element(By.ID, "login-name").send_keys(viewer.split(":")[0])
    driver.find_element(By.ID, "login-password").send_keys(viewer.split(":", 1)[1])
    driver.find_element(By.ID, "login-submit").click()
    wait_for("the viewer's name", lambda: viewer.split(":")[0] in driver.find_element(By.ID, "who").text)
    driver.get(url + "/ui/#/key?k=" + b64("/app/config"))
    allowed = wait_for("the value", lambda: driver.find_element(By.ID, "value").text)
    driver.get(url + "/ui/#/keys")
    denied = wait_for("the refusal", lambda: driver.find_element(By.CSS_SELECTOR, "main .error").text)
    report("viewer", allowed=json.loads(allowed), denied=denied)

    # A killed member is marked down.
    driver.get(url + "/ui/#/cluster")
    wait_for("three members", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#members tbody tr[data-state=up]")) == 3)
    os.kill(int(victim), signal.SIGKILL)
    killed = time.time()
    down = wait_for("a member down", lambda: driver.find_elements(By.CSS_SELECTOR, "#members tbody tr[data-state=down]"), timeout=15)
    shot("member-down")
    report("down", members=[d.get_attribute("data-member") for d in down], seconds=time.time() - killed)
finally:
    driver.quit()
