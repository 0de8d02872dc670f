"""An arm64 Debian root file system run under QEMU user emulation: built once, cached,
commands run inside it with chroot. Used by tools/arm64_check.py (docs/arm64.md).

Why each step is there (each was seen failing without it on the x86-64 development VM):
- Debian's `debootstrap --arch=arm64` builds the rootfs and `qemu-user-static` runs its
  binaries through binfmt_misc. The Debian registration has the F flag (the emulator is
  opened when registered), so nothing has to be copied into the rootfs. binfmt_misc may
  not be mounted at all: it is mounted here, and on this VM the registration lives only
  as long as that mount, so everything runs inside one process tree.
- The host's extra CA certificates are copied in and pip is pointed at the system bundle:
  behind a TLS-inspecting proxy pip inside the rootfs cannot reach the index otherwise.
- qemu 7.2 passes the host's x86 /proc/cpuinfo through, and the LiteRT interpreter
  (XNNPACK reads it to pick kernels) segfaults on it. An aarch64 cpuinfo (Cortex-A76, the
  core of a Raspberry Pi 5) is bind-mounted over it and QEMU_CPU=cortex-a76 makes the
  emulated CPU the same core.
- Every mount is made in a private mount namespace (`in_private_mount_namespace`): they
  vanish with the process even if it is killed, and are unmounted in `finally` as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# minbase + what a venv needs; CA certificates for pip's TLS.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# host command -> the Debian package that provides it
HOST_TOOLS = {"debootstrap": "debootstrap", "qemu-aarch64-static": "qemu-user-static",
              "update-binfmts": "binfmt-support", "unshare": "util-linux", "chroot": "coreutils"}
QEMU_CPU = "cortex-a76"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_ENTRY = "qemu-aarch64"
MARKER = ".edgehar-rootfs.json"  # written last: a rootfs without it is half-built
NAMESPACE_FLAG = "EDGEHAR_ARM64_PRIVATE_MOUNTS"
# pip settings that mean the same inside the rootfs (proxies, an index mirror); host paths
# such as PIP_FIND_LINKS do not, so the chroot gets only these.
PASSED_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT",
              "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class RootfsError(Exception):
    """A setup step failed; the message is one line naming it."""


def missing_packages(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """Debian packages whose commands this host lacks, sorted."""
    return sorted({pkg for tool, pkg in HOST_TOOLS.items() if which(tool) is None})


def ensure_host_packages() -> None:
    """apt-get install what `missing_packages` names (root on Debian), else say what to install."""
    missing = missing_packages()
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise RootfsError(f"needs the Debian packages {' '.join(missing)} and there is no apt-get here")
    print(f"arm64-check: installing {' '.join(missing)} (apt-get)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RootfsError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {_last_line(proc.stderr)}")


def in_private_mount_namespace(argv: list[str]) -> None:
    """Re-run this process under `unshare --mount --propagation private` unless it already
    is: mounts made after this cannot leak onto the host, whatever ends the process."""
    if os.environ.get(NAMESPACE_FLAG) == "1":
        return
    os.environ[NAMESPACE_FLAG] = "1"
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable, *argv])


def binfmt_state(entry_text: str) -> tuple[bool, str]:
    """(enabled, flags) from a /proc/sys/fs/binfmt_misc/<entry> file's text."""
    lines = entry_text.splitlines()
    flags = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("flags:")), "")
    return bool(lines) and lines[0].strip() == "enabled", flags


def enable_binfmt(binfmt: Path = BINFMT) -> str:
    """Make the kernel run aarch64 ELF files with qemu-aarch64-static; returns its flags.

    Mounts binfmt_misc when it is not (in this process's namespace) and enables Debian's
    registration. Without the F flag the emulator would have to be inside the rootfs."""
    if not (binfmt / "status").exists():
        _check(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], "mounting binfmt_misc")
    entry = binfmt / BINFMT_ENTRY
    if not entry.exists() or not binfmt_state(entry.read_text())[0]:
        _check(["update-binfmts", "--enable", BINFMT_ENTRY], f"update-binfmts --enable {BINFMT_ENTRY}")
    if not entry.exists():
        raise RootfsError(f"binfmt_misc has no {BINFMT_ENTRY} entry after update-binfmts (is qemu-user-static installed?)")
    enabled, flags = binfmt_state(entry.read_text())
    if not enabled or "F" not in flags:
        raise RootfsError(f"binfmt_misc {BINFMT_ENTRY}: enabled={enabled}, flags {flags!r} (needs F)")
    return flags


def aarch64_cpuinfo(cores: int) -> str:
    """A /proc/cpuinfo as an aarch64 Linux writes it for `cores` Cortex-A76 cores (r4p1,
    the Raspberry Pi 5's), matching QEMU_CPU: what the LiteRT runtime reads to choose kernels."""
    block = ("processor\t: {i}\nBogoMIPS\t: 108.00\n"
             "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
             "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n")
    return "\n".join(block.format(i=i) for i in range(max(1, cores))) + "\n"


def chroot_env(host_env: dict[str, str]) -> dict[str, str]:
    """A clean environment for commands in the rootfs: the host's pip and proxy settings
    that still hold there, pip pointed at the rootfs's CA bundle, the emulated CPU."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "TERM": "dumb", "QEMU_CPU": QEMU_CPU,
           "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({k: host_env[k] for k in PASSED_ENV if k in host_env})
    return env


def build_rootfs(root: Path, mirror: str = MIRROR, log: Path | None = None) -> bool:
    """debootstrap an arm64 bookworm into `root` unless a finished one is there; True when built now.

    Built in `root`.partial and renamed when done, so an interrupted build is never taken
    for a finished one (it is started over)."""
    want = {"suite": SUITE, "packages": list(BASE_PACKAGES)}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return False
    partial = root.with_name(root.name + ".partial")
    for stale in (partial, root):
        if stale.exists():
            _remove_tree(stale)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _check(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            SUITE, str(partial), mirror], "debootstrap", log=log)
    (partial / MARKER).write_text(json.dumps(want))
    partial.rename(root)
    return True


def configure_rootfs(root: Path, host_certs: Path = Path("/usr/local/share/ca-certificates")) -> None:
    """Name resolution and the host's extra CA certificates inside the rootfs (call it
    with the rootfs mounted: update-ca-certificates runs inside)."""
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)  # a symlink here would be followed out of the rootfs
    shutil.copyfile("/etc/resolv.conf", resolv)
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for cert in sorted(host_certs.glob("*.crt")) if host_certs.is_dir() else []:
        shutil.copyfile(cert, target / cert.name)
    chroot_check(root, ["update-ca-certificates", "--fresh"], "update-ca-certificates")


@contextlib.contextmanager
def mounted(root: Path, cpuinfo: str) -> Iterator[None]:
    """/proc (with the aarch64 cpuinfo over its own), /sys and /dev (with a pty instance of
    its own, for the simulated serial devices) inside `root`, unmounted on the way out."""
    fake = root / "run/edgehar-cpuinfo"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(cpuinfo)
    steps = [
        (["mount", "-t", "proc", "proc", str(root / "proc")], root / "proc"),
        (["mount", "--bind", str(fake), str(root / "proc/cpuinfo")], root / "proc/cpuinfo"),
        (["mount", "--rbind", "/sys", str(root / "sys")], root / "sys"),
        (["mount", "--bind", "/dev", str(root / "dev")], root / "dev"),
        (["mount", "-t", "devpts", "devpts", str(root / "dev/pts"), "-o", "newinstance,ptmxmode=0666,mode=0620"],
         root / "dev/pts"),
        (["mount", "-t", "tmpfs", "shm", str(root / "dev/shm")], root / "dev/shm"),
    ]
    done: list[Path] = []
    try:
        for cmd, point in steps:
            if not point.exists():  # /proc/cpuinfo exists once proc is mounted
                point.mkdir(parents=True)
            _check(cmd, f"mount {point}")
            done.append(point)
        yield
    finally:
        for point in reversed(done):
            if subprocess.run(["umount", "-R", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-R", "-l", str(point)], capture_output=True)


def chroot_run(root: Path, argv: list[str], timeout_s: float, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run `argv` inside the rootfs (text output captured, and appended to `log`). It gets
    a session of its own, so a timeout ends everything it started, not only chroot."""
    proc = subprocess.Popen(["chroot", str(root), *argv], env=chroot_env(dict(os.environ)), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RootfsError(f"{' '.join(argv[:2])} in the arm64 rootfs did not end within {timeout_s:.0f} s") from None
    _append(log, argv, out + err, proc.returncode)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def chroot_check(root: Path, argv: list[str], what: str, timeout_s: float = 1800, log: Path | None = None) -> str:
    """chroot_run that raises RootfsError (naming `what`) on a non-zero exit; its stdout."""
    proc = chroot_run(root, argv, timeout_s, log)
    if proc.returncode != 0:
        raise RootfsError(f"{what} in the arm64 rootfs failed (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}")
    return proc.stdout


def _check(cmd: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    _append(log, cmd, proc.stdout + proc.stderr, proc.returncode)
    if proc.returncode != 0:
        where = f"; log: {log}" if log is not None else ""
        raise RootfsError(f"{what} failed (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}{where}")


def _append(log: Path | None, cmd: list[str], output: str, returncode: int) -> None:
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{output}[exit {returncode}]\n")


def _remove_tree(path: Path) -> None:
    """Remove a (half-built) rootfs; refuse while anything is still mounted inside it."""
    inside = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(path.resolve()) + "/")]
    if inside:
        raise RootfsError(f"{path} still has mounts inside ({inside[0]}); unmount them first")
    shutil.rmtree(path)


def _last_line(text: str) -> str:
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else "no output"
