"""Team data versioning: teammates share data, models and experiments through a real SSH server.

An sshd on 127.0.0.1 (tests/sshd.py) holds the team's DVC remote; a bare git repository is the
team's git server. Alice runs the tiny pipeline once for the whole file and publishes both; each
test clones what it needs, as a teammate on another machine would. The remote's url is committed
in `.dvc/config`; each teammate's key goes in their own `.dvc/config.local`, never into git.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline_repo import PipelineRepo
from sshd import free_port, most_sessions_at_once, start_test_server

pytestmark = pytest.mark.integration

EXPERIMENT = "overlays-one-each"             # reruns only render-overlays, the cheapest stage


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_test_server(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(tmp_path_factory, server):
    """Alice's repo after a first run: remote `team` on the SSH server (committed, her key in
    config.local), her commit on the team's git server as `origin`."""
    root = tmp_path_factory.mktemp("team")
    alice = teammate(PipelineRepo.create(root / "alice"), server)
    alice.dvc("repro")
    alice.dvc("remote", "add", "-d", "team", server.url(root / "store"))
    use_key(alice, "team", server.teammate_key)
    alice.git("add", "-A")
    alice.git("commit", "-q", "-m", "first run; the team's DVC remote on the SSH server")
    branch = alice.git("branch", "--show-current").strip()
    alice.git("init", "-q", "--bare", "-b", branch, str(root / "origin.git"))
    alice.git("remote", "add", "origin", str(root / "origin.git"))
    alice.git("push", "-q", "-u", "origin", branch)
    alice.origin, alice.store = root / "origin.git", root / "store"
    return alice


def teammate(repo: PipelineRepo, server) -> PipelineRepo:
    """Keys come from each remote's `keyfile` only: no agent of whoever runs the tests."""
    repo.env.pop("SSH_AUTH_SOCK", None)
    repo.server = server
    return repo


def clone(alice: PipelineRepo, path: Path) -> PipelineRepo:
    """A teammate's `git clone` of the team's git server, their key in their config.local."""
    alice.git("clone", "-q", str(alice.origin), str(path))
    repo = teammate(PipelineRepo(path), alice.server)
    use_key(repo, "team", alice.server.teammate_key)
    return repo


def use_key(repo: PipelineRepo, remote: str, key: Path) -> None:
    repo.dvc("remote", "modify", "--local", remote, "keyfile", str(key))


def add_remote(repo: PipelineRepo, name: str, url: str, key: Path) -> None:
    """A remote of this teammate's only (config.local), e.g. a second store on the server."""
    repo.dvc("remote", "add", "--local", name, url)
    use_key(repo, name, key)


def run_dvc(repo: PipelineRepo, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo.path, env=repo.env,
                          capture_output=True, text=True, timeout=600)


def stored_objects(store: Path) -> dict[str, Path]:
    """The complete objects in a DVC remote's folder by their md5 (partial uploads end in .tmp)."""
    return {path.parent.name + path.name.removesuffix(".dir"): path
            for path in (store / "files" / "md5").glob("*/*") if not path.name.endswith(".tmp")}


def partial_uploads(store: Path) -> list[Path]:
    """Files the remote is writing (or was, when the connection broke): dvc-ssh uploads each
    object to a temp name and renames it once complete."""
    return list((store / "files" / "md5").glob("*/*.tmp"))


def upload_in_flight(store: Path, written_bytes: int) -> bool:
    """Whether a file is being uploaded and has `written_bytes` or more on the server so far."""
    for path in partial_uploads(store):
        try:
            if path.stat().st_size >= written_bytes:
                return True
        except FileNotFoundError:                  # renamed into place meanwhile
            pass
    return False


def assert_objects_intact(store: Path) -> None:
    for md5, path in stored_objects(store).items():
        assert hashlib.md5(path.read_bytes()).hexdigest() == md5, f"{path} is corrupt"


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting {seconds} s for {what}"
        time.sleep(0.01)


# --- Sharing a run, an experiment and a model ---------------------------------------------------


def test_a_clone_pulls_alices_pushed_run_and_has_nothing_to_rerun(alice, tmp_path):
    pushed = alice.dvc("push")
    print(f"alice$ dvc push\n{pushed}")
    assert "files pushed" in pushed

    bob = clone(alice, tmp_path / "bob")
    committed_config = (bob.path / ".dvc/config").read_text()
    assert alice.server.url(alice.store) in committed_config     # the remote came with git...
    assert "keyfile" not in committed_config                     # ...Alice's key did not
    pulled = bob.dvc("pull")
    status = bob.dvc("status")
    print(f"bob$ dvc pull\n{pulled}\nbob$ dvc status\n{status}")
    assert "Data and pipelines are up to date." in status
    assert bob.output_hashes() == alice.output_hashes()
    metrics = bob.dvc("metrics", "show")
    print(f"bob$ dvc metrics show\n{metrics}")
    assert metrics == alice.dvc("metrics", "show")
    assert json.loads(bob.dvc("metrics", "show", "--json")) == json.loads(alice.dvc("metrics", "show", "--json"))


def test_an_experiment_alice_pushes_shows_in_bobs_exp_show(alice, tmp_path):
    ran = alice.dvc("exp", "run", "-n", EXPERIMENT, "-S", "overlays.n_best_worst=1")
    assert alice.stages_run(ran) == ["render-overlays"]
    figures = {path: digest for path, digest in alice.output_hashes().items()
               if path.startswith("reports/render_overlays/")}
    pushed = alice.dvc("exp", "push", "origin", EXPERIMENT)     # git refs to origin, data to `team`
    print(f"alice$ dvc exp push origin {EXPERIMENT}\n{pushed}")
    alice.reset_to_head()

    bob = clone(alice, tmp_path / "bob")
    assert EXPERIMENT not in bob.dvc("exp", "show", "--json")
    pulled = bob.dvc("exp", "pull", "origin", EXPERIMENT)
    shown = bob.dvc("exp", "show", "--no-pager", "--only-changed", "--drop", "data/|models/")
    print(f"bob$ dvc exp pull origin {EXPERIMENT}\n{pulled}\nbob$ dvc exp show --only-changed\n{shown}")
    experiments = json.dumps(json.loads(bob.dvc("exp", "show", "--json")))
    assert EXPERIMENT in experiments and '"n_best_worst": 1' in experiments
    bob.dvc("exp", "apply", EXPERIMENT)                         # its outputs came with it
    assert {path: digest for path, digest in bob.output_hashes().items()
            if path.startswith("reports/render_overlays/")} == figures


def test_a_teammate_without_a_clone_gets_the_registered_model_over_ssh(alice, tmp_path):
    alice.dvc("push")
    alice.git("tag", "-a", "fcn8s-vgg16@v1.0.0", "-m", "Registering artifact fcn8s-vgg16 version v1.0.0")
    alice.git("push", "-q", "origin", "fcn8s-vgg16@v1.0.0")

    carol = teammate(PipelineRepo(tmp_path), alice.server)      # no repo: only the git server's url
    key = f"keyfile={alice.server.teammate_key}"
    url = carol.dvc("artifacts", "get", str(alice.origin), "fcn8s-vgg16", "--show-url", "--remote-config", key)
    got = carol.dvc("artifacts", "get", str(alice.origin), "fcn8s-vgg16", "-o", "fcn.keras",
                    "--remote-config", key)
    print(f"carol$ dvc artifacts get <origin> fcn8s-vgg16 --show-url\n{url}\ncarol$ dvc artifacts get ...\n{got}")
    lock = yaml.safe_load(alice.git("show", "HEAD:dvc.lock"))
    md5 = {out["path"]: out["md5"] for out in lock["stages"]["train-fcn"]["outs"]}["models/fcn/fcn8s_vgg16.keras"]
    shown = [line for line in url.splitlines() if line.startswith("ssh://")]    # stderr may hold warnings
    assert shown == [f"ssh://127.0.0.1:{alice.server.port}{alice.store}/files/md5/{md5[:2]}/{md5[2:]}"]
    assert hashlib.md5((tmp_path / "fcn.keras").read_bytes()).hexdigest() == md5


def test_a_teammate_without_a_clone_gets_one_tracked_file_with_dvc_get(alice, tmp_path):
    alice.dvc("push")
    dana = teammate(PipelineRepo(tmp_path), alice.server)
    got = dana.dvc("get", str(alice.origin), "models/fcn/fcn8s_vgg16.geometry.json",
                   "--remote-config", f"keyfile={alice.server.teammate_key}")
    print(f"dana$ dvc get <origin> models/fcn/fcn8s_vgg16.geometry.json\n{got}")
    fetched = tmp_path / "fcn8s_vgg16.geometry.json"
    assert fetched.read_bytes() == (alice.path / "models/fcn/fcn8s_vgg16.geometry.json").read_bytes()


# --- Failures on the way -----------------------------------------------------------------------


def test_a_push_cut_off_by_the_server_going_down_completes_when_retried(alice, tmp_path):
    store = tmp_path / "store"
    add_remote(alice, "cutoff", alice.server.url(store), alice.server.teammate_key)
    push = alice.start_dvc("push", "-r", "cutoff", "-j", "1")
    try:
        # Only the FCN (its VGG16 weights, about 60 MB) is larger than 4 MB: the cut lands inside it.
        wait_for(lambda: upload_in_flight(store, 4_000_000) or push.poll() is not None, 300,
                 "the model's upload under way")
        alice.server.stop()
        interrupted = push.stdout.read()
        assert push.wait(timeout=120) != 0, f"the push ended before the server went down:\n{interrupted}"
    finally:
        PipelineRepo.kill(push)
        if not alice.server.running:
            alice.server.start()
    complete, cut = len(stored_objects(store)), partial_uploads(store)
    print(f"alice$ dvc push -r cutoff -j 1   (sshd killed mid-upload: {complete} objects complete, "
          f"{len(cut)} cut: {[path.stat().st_size for path in cut]} bytes)\n{interrupted}")
    assert "ERROR:" in interrupted and "Traceback" not in interrupted
    assert cut                                      # the server went down in the middle of a file

    retried = alice.dvc("push", "-r", "cutoff")
    print(f"alice$ dvc push -r cutoff   (sshd back; {len(partial_uploads(store))} cut file left, "
          f"named .tmp)\n{retried}")
    assert "in sync" in alice.dvc("status", "--cloud", "-r", "cutoff")
    assert complete < len(stored_objects(store))
    assert_objects_intact(store)                    # the cut file was uploaded again, whole

    bob = clone(alice, tmp_path / "bob")
    add_remote(bob, "cutoff", alice.server.url(store), alice.server.teammate_key)
    bob.dvc("pull", "-r", "cutoff")
    assert "Data and pipelines are up to date." in bob.dvc("status")
    assert bob.output_hashes() == alice.output_hashes()


def test_two_teammates_pushing_at_the_same_time_both_succeed(alice, tmp_path):
    """Bob and Carol each track a file of their own and push it with the shared run's outputs
    (the same objects from both sides) to one store, at once."""
    alice.dvc("push")
    store = tmp_path / "store"
    teammates = []
    for name in ("bob", "carol"):
        repo = clone(alice, tmp_path / name)
        repo.dvc("pull")
        (repo.path / f"data/raw/{name}.bin").write_bytes(os.urandom(2_000_000))
        repo.dvc("add", f"data/raw/{name}.bin")
        add_remote(repo, "shared", alice.server.url(store), alice.server.teammate_key)
        teammates.append(repo)
    log_start = len(alice.server.log.read_text())
    pushes = [repo.start_dvc("push", "-r", "shared") for repo in teammates]
    outputs = [push.communicate(timeout=600)[0] for push in pushes]
    assert most_sessions_at_once(alice.server.log.read_text()[log_start:]) >= 2   # they did overlap
    for repo, push, output in zip(teammates, pushes, outputs):
        print(f"{repo.path.name}$ dvc push -r shared   (exit {push.returncode})\n{output}")
    assert [push.returncode for push in pushes] == [0, 0], outputs
    for repo in teammates:
        assert "in sync" in repo.dvc("status", "--cloud", "-r", "shared")
    own = [yaml.safe_load((repo.path / f"data/raw/{repo.path.name}.bin.dvc").read_text())["outs"][0]["md5"]
           for repo in teammates]
    assert set(own) <= set(stored_objects(store))
    assert_objects_intact(store)


@pytest.mark.parametrize("problem, cause", [
    pytest.param("wrong-key", "Permission denied for user", id="wrong-key"),
    pytest.param("closed-port", "Connect call failed", id="closed-port"),
])
def test_a_wrong_key_or_a_closed_port_gives_one_clear_error_line(alice, tmp_path, problem, cause):
    server = alice.server
    if problem == "wrong-key":
        add_remote(alice, problem, server.url(tmp_path / "store"), server.stranger_key)
    else:
        add_remote(alice, problem, server.url(tmp_path / "store", port=free_port()), server.teammate_key)
    result = run_dvc(alice, "push", "-r", problem)
    output = result.stdout + result.stderr
    print(f"alice$ dvc push -r {problem}   (exit {result.returncode})\n{output}")
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and cause in errors[0], output
    assert "Traceback" not in output
    assert not (tmp_path / "store").exists()
