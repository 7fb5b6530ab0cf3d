"""The workflow on a real SLURM scheduler: a one-node cluster (munge, slurmctld,
slurmd from Debian's packages, two fake GPUs as GRES) started for this module,
the tiny workflow run through `--executor slurm` with profiles/slurm, then
checks on what the scheduler saw. Skipped, loudly, when the packages are absent
(.ci/run installs them). The daemons are stopped by PID.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import ROOT, SNAKEMAKE, TINY, edited_config

from saeflow.workflow.provenance import read_record

ETC = Path("/etc/slurm")
DAEMONS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol"]
MISSING = [
    d
    for d in DAEMONS
    if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()
]

if MISSING or os.geteuid() != 0:
    msg = "SKIPPING the real-SLURM tests: " + (
        f"{', '.join(MISSING)} not installed (apt-get install slurmctld slurmd "
        "slurm-client slurm-wlm-basic-plugins munge)"
        if MISSING
        else "slurmd and munged must be started as root"
    )
    print(f"\n{'!' * 78}\n{msg}\n{'!' * 78}", file=sys.stderr)
    warnings.warn(msg, stacklevel=1)  # shown in pytest's warnings summary
    pytest.skip(msg, allow_module_level=True)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` s."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_leftovers(marker: str) -> None:
    """SIGKILL every process (but this one) whose command line mentions `marker`.

    A cancelled job's Python can outlive its step: it ran on for minutes after
    one CI run had finished. Nothing a test started may keep running."""
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and marker in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


class SlurmCluster:
    """munged + slurmctld + slurmd in the foreground, everything under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname()
        self.procs: list[subprocess.Popen] = []
        self.links: list[Path] = []
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}

    def write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "gpu", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        shutil.chown(r / "munge", "munge", "munge")
        for i in range(2):  # GRES files must be character devices
            subprocess.run(["mknod", str(r / "gpu" / f"nvidia{i}"), "c", "1", "3"])
        conf = f"""
ClusterName=saeflowtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={r}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
KillWait=2
MpiDefault=none
SwitchType=switch/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs=16 Sockets=1 CoresPerSocket=16 \
ThreadsPerCore=1 RealMemory=262144 Gres=gpu:fake:2 State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        (r / "slurm.conf").write_text(conf.lstrip())
        (r / "gres.conf").write_text(
            "AutoDetect=off\n"
            f"NodeName={self.host} Name=gpu Type=fake File={r}/gpu/nvidia[0-1]\n"
        )
        # Jobs find the config at /etc/slurm only: snakemake's jobstep executor
        # drops SLURM_* variables (SLURM_CONF too) before calling srun.
        for name in ("slurm.conf", "gres.conf"):
            link = ETC / name
            if link.is_symlink() and not link.exists():
                link.unlink()  # left by a killed test run
            if link.exists() or link.is_symlink():
                pytest.fail(f"{link} exists: a real cluster's or another test's")
            link.symlink_to(r / name)
            self.links.append(link)

    def _start(self, cmd: list[str], log: str) -> None:
        out = open(self.root / "log" / log, "w")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        )

    def start(self) -> None:
        self.write_config()
        m = self.root / "munge"
        self._start(
            ["runuser", "-u", "munge", "--", "munged", "--foreground", "--force"]
            + [f"--socket={m}/munge.socket", f"--pid-file={m}/munged.pid"]
            + [f"--log-file={m}/munged.log", f"--seed-file={m}/seed"],
            "munged.out",
        )
        self._wait_for(lambda: (m / "munge.socket").exists(), "munged")
        self._start(["slurmctld", "-D", "-i"], "slurmctld.out")
        self._start(["slurmd", "-D", "-N", self.host], "slurmd.out")
        self._wait_for(self._node_idle, "slurmd to register")

    def _node_idle(self) -> bool:
        res = self.run(["sinfo", "-h", "-o", "%t"])
        return res.returncode == 0 and res.stdout.strip() in {"idle", "mix"}

    def _wait_for(self, ready, what: str, timeout: float = 60) -> None:
        end = time.time() + timeout
        while time.time() < end:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited: {self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"== {f.name}\n{f.read_text()[-3000:]}"
            for f in sorted(self.root.rglob("*.log"))
            + sorted((self.root / "log").glob("*.out"))
        )

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env)

    def stop(self) -> None:
        """SIGTERM each daemon by PID (reverse start order), SIGKILL if it lingers."""
        for p in reversed(self.procs):
            terminate(p, grace=15)
        for link in self.links:
            link.unlink(missing_ok=True)

    def show(self, job_id: str) -> str:
        return self.run(["scontrol", "show", "job", job_id]).stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows (finished ones stay: MinJobAge)."""
        res = self.run(["squeue", "-t", "all", "-h", "-o", "%i|%j|%T|%b"])
        keys = ["id", "name", "state", "gres"]
        return [
            dict(zip(keys, line.split("|"), strict=True))
            for line in res.stdout.splitlines()
        ]


@pytest.fixture(scope="module")
def cluster():
    # Not under pytest's tmp folder: the munge user must reach its socket folder.
    root = Path(tempfile.mkdtemp(prefix="saeflow-slurm-"))
    root.chmod(0o755)
    c = SlurmCluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


TARGET = "results/sae/base/layer_1/metrics.json"  # 2 corpora, 2 caches, 1 SAE
SLURM_ARGS = [
    "--executor",
    "slurm",
    # No slurmdbd here: without this the plugin polls sacct and hangs.
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
]


def write_profile(folder: Path, edit=None) -> Path:
    """profiles/slurm with this cluster's partition and no accounts, then `edit`."""
    cfg = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    cfg["default-resources"]["slurm_partition"] = "debug"
    cfg["slurm-no-account"] = True
    if edit:
        edit(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    return folder


def run_snakemake(
    work: Path,
    profile: Path,
    *args: str,
    config: Path = TINY,
    timeout: float = 2400,
    env: dict[str, str] | None = None,
):
    cmd = [*SNAKEMAKE, "-d", str(work), "--configfile", str(config)]
    cmd += ["--profile", str(profile), *SLURM_ARGS, *args]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def slurm_ids(result: subprocess.CompletedProcess) -> list[str]:
    out = result.stdout + result.stderr
    return re.findall(r"has been submitted with SLURM jobid (\d+)", out)


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_bert) -> Path:
    w = tmp_path_factory.mktemp("slurm_run")
    shutil.copytree(tiny_bert, w / "models" / "tiny_bert")
    return w


@pytest.fixture(scope="module")
def slurm_run(cluster, work):
    result = run_snakemake(work, write_profile(work / "profile"), TARGET)
    assert result.returncode == 0, result.stderr[-4000:] + cluster.logs()
    return result


def test_every_job_went_through_sbatch_and_completed(cluster, slurm_run):
    ids = slurm_ids(slurm_run)
    assert len(ids) == 5  # build_corpus ×2, cache_activations ×2, train_sae
    states = {j["id"]: j["state"] for j in cluster.jobs()}
    assert all(states[i] == "COMPLETED" for i in ids), states


def test_gpu_rule_received_cuda_visible_devices_from_scheduler(
    cluster, slurm_run, work
):
    ids = slurm_ids(slurm_run)
    sae = read_record(TARGET, work)["scheduler"]
    assert sae["SLURM_JOB_ID"] in ids
    assert sae["CUDA_VISIBLE_DEVICES"] == "0"  # SLURM's choice among 2 fake GPUs
    corpus = read_record("results/corpus/domain.parquet", work)["scheduler"]
    assert corpus["SLURM_JOB_ID"] in ids
    assert corpus["CUDA_VISIBLE_DEVICES"] is None  # a CPU rule gets no GPU
    assert "gres:gpu:1" in cluster.show(sae["SLURM_JOB_ID"])  # TresPerJob


def test_failing_job_is_reported_failed_with_its_log(
    cluster, slurm_run, work, tmp_path
):
    shutil.copytree(work / "results" / "corpus", tmp_path / "results" / "corpus")
    # A checkpoint with its config.json but no weights: the parse-time checks
    # (sizes only) pass it, the job that loads it fails.
    broken = tmp_path / "models" / "no_weights_model"
    broken.mkdir(parents=True)
    shutil.copy(work / "models" / "tiny_bert" / "config.json", broken)
    bad = edited_config(
        tmp_path,
        "bad.yaml",
        lambda c: c["models"]["base"].update(ref="models/no_weights_model"),
    )
    target = "results/activations/base/domain_report.json"
    result = run_snakemake(tmp_path, write_profile(tmp_path / "p"), target, config=bad)
    out = result.stdout + result.stderr
    assert result.returncode == 1
    (job_id,) = slurm_ids(result)
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'FAILED'" in out
    assert "logs/activations/base/domain.log" in out
    assert (
        "no_weights_model"
        in (tmp_path / "logs/activations/base/domain.log").read_text()
    )
    assert {j["id"]: j["state"] for j in cluster.jobs()}[job_id] == "FAILED"


def test_preflight_stops_before_submitting(cluster, work, tmp_path):
    shutil.copytree(work / "models", tmp_path / "models")
    before = len(cluster.jobs())
    no_partition = write_profile(
        tmp_path / "p1", lambda c: c["default-resources"].pop("slurm_partition")
    )
    result = run_snakemake(tmp_path, no_partition, TARGET)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no slurm_partition" in out and "nothing was submitted" in out
    too_many = write_profile(
        tmp_path / "p2", lambda c: c["set-resources"]["train_sae"].update(gpu=4)
    )
    check = subprocess.run(
        [sys.executable, "-m", "saeflow.cli", "check-cluster", "--profile", too_many],
        capture_output=True,
        text=True,
        env=cluster.env,
    )
    assert check.returncode == 1
    assert "train_sae: asks for 4 GPU(s)" in check.stdout
    assert "gpu:fake:2" in check.stdout
    assert len(cluster.jobs()) == before


def test_time_limit_kill_leaves_no_output_and_rerun_resumes(
    cluster, slurm_run, work, tmp_path
):
    # Long enough not to finish within SLURM's smallest time limit (1 minute).
    long = edited_config(
        tmp_path,
        "long.yaml",
        lambda c: c["sae"].update(epochs=2000.0, checkpoint_every=5),
    )
    limited = write_profile(
        tmp_path / "p", lambda c: c["set-resources"]["train_sae"].update(runtime=1)
    )
    layer = work / "results" / "sae" / "base" / "layer_1"
    # --forcerun: the rerun must not depend on what Snakemake counts as a change.
    killed = run_snakemake(work, limited, TARGET, "--forcerun", TARGET, config=long)
    assert killed.returncode != 0
    (job_id,) = slurm_ids(killed)
    assert {j["id"]: j["state"] for j in cluster.jobs()}[job_id] == "TIMEOUT"
    assert not (layer / "metrics.json").exists()
    assert not (layer / "sae").exists()
    assert not [
        p
        for p in layer.rglob("*")
        if not p.name.startswith(".") and "checkpoint" not in p.parts
    ]
    assert (layer / "checkpoint" / "state.pt").exists()
    log = work / "logs" / "sae" / "base" / "layer_1.log"
    assert "resuming" not in log.read_text()

    # The rerun picks the checkpoint up; stopped as soon as it says so.
    rerun = subprocess.Popen(
        [*SNAKEMAKE, "-d", str(work), "--configfile", str(long), "--profile"]
        + [str(limited), *SLURM_ARGS, TARGET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )

    # Snakemake deletes the job's old log before the job starts.
    def log_text() -> str:
        return log.read_text() if log.exists() else ""

    try:
        end = time.time() + 600
        while "resuming from checkpoint" not in log_text():
            assert time.time() < end and rerun.poll() is None, log_text()
            time.sleep(2)
    finally:
        # Snakemake cancels its SLURM job on SIGTERM, but may linger while doing
        # so; the test only needs both gone.
        terminate(rerun, grace=60)
        cluster.run(["scancel", "--user", getpass.getuser()])
        time.sleep(5)  # KillWait=2: SLURM's own kill comes first
        kill_leftovers(str(work))


def test_requests_beyond_the_node_refused_before_submitting(cluster, work, tmp_path):
    """The node has 16 CPUs and 262144 MB: threads 32 would pend forever
    (PartitionConfig), 300000 MB would be refused by sbatch mid-run."""
    shutil.copytree(work / "models", tmp_path / "models")
    before = len(cluster.jobs())

    def too_big(cfg):
        cfg["set-threads"]["train_sae"] = 32
        cfg["set-resources"]["train_sae"]["mem_mb"] = 300000

    profile = write_profile(tmp_path / "p", too_big)
    check = subprocess.run(
        [sys.executable, "-m", "saeflow.cli", "check-cluster", "--profile", profile],
        capture_output=True,
        text=True,
        env=cluster.env,
    )
    assert check.returncode == 1
    for line in (
        "train_sae: threads: asks for 32 CPUs but the nodes of partition 'debug'"
        " have at most 16",
        "train_sae: mem_mb: asks for 300000 MB but the nodes of partition 'debug'"
        " have at most 262144 MB",
    ):
        assert line in check.stdout
    result = run_snakemake(tmp_path, profile, TARGET)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "nothing was submitted" in out
    assert "rule train_sae: threads: asks for 32 CPUs" in out
    assert "rule train_sae: mem_mb: asks for 300000 MB" in out
    assert len(cluster.jobs()) == before


def test_job_that_can_never_start_is_reported_and_cancelled(cluster):
    """What the workflow's watcher thread does each poll, on a real pending job."""
    from saeflow.workflow.cluster_watch import check_pending

    name = "saeflow-hopeless-test"
    sub = cluster.run(
        ["sbatch", "-p", "debug", "-c", "32", "--job-name", name]
        + ["--comment", "rule_train_sae_wildcards_base_1", "--wrap", "sleep 1"]
    )
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.split()[-1]
    end = time.time() + 30
    while "PartitionConfig" not in cluster.show(job_id):
        assert time.time() < end, cluster.show(job_id)
        time.sleep(1)

    found = check_pending(name, cluster.run, report=lambda m: None)

    assert found and found[0].startswith(
        f"SLURM job {job_id} (rule train_sae) can never start: Reason=PartitionConfig"
    )
    end = time.time() + 30
    while "JobState=CANCELLED" not in cluster.show(job_id):
        assert time.time() < end, cluster.show(job_id)
        time.sleep(1)


def test_run_stops_when_its_job_can_never_start(cluster, work, tmp_path):
    """The watcher inside a real `--executor slurm` run: the only node drained
    (the preflight does not look at node states), the run's first jobs pend with
    "Nodes required for job are DOWN, DRAINED ..." (code Resources) or
    "ReqNodeNotAvail, UnavailableNodes:<node>" and no node up. Without the
    watcher the plugin waits on PENDING forever and this run times out."""
    shutil.copytree(work / "models", tmp_path / "models")
    node = ["scontrol", "update", f"nodename={cluster.host}"]
    drained = cluster.run([*node, "state=drain", "reason=saeflow-test"])
    assert drained.returncode == 0, drained.stderr
    env = {**os.environ, "SAEFLOW_PENDING_CHECK_SECONDS": "3"}
    try:
        result = run_snakemake(
            tmp_path, write_profile(tmp_path / "p"), TARGET, timeout=120, env=env
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the run waited on: {err.stderr.decode()[-3000:]}")
    finally:
        # A timed-out run leaves its jobs pending: they must not start later.
        cluster.run(["scancel", "--user", getpass.getuser(), "--state", "PENDING"])
        cluster.run([*node, "state=resume"])
        kill_leftovers(str(tmp_path))
        cluster._wait_for(cluster._node_idle, "the node to resume")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    ids = slurm_ids(result)
    assert ids
    assert re.search(
        r"SLURM job \d+ \(rule build_corpus\) can never start: "
        # SLURM 22.05 words it either way, for jobs of the same run
        r"Reason=(Nodes required for job are DOWN, DRAINED|ReqNodeNotAvail).*"
        r"no node of partition 'debug' is up",
        out,
    ), out[-4000:]
    states = {j["id"]: j["state"] for j in cluster.jobs()}
    assert all(states[i] == "CANCELLED" for i in ids), states
