"""How much memory the machine can give this process now: the number every memory check compares
its estimate (``memory.py``) with.

``available_bytes`` takes the smallest of what the operating system says is free (``/proc/meminfo``'s
MemAvailable, else the free physical pages), the room under each cgroup memory limit on the process,
and the room under ``ulimit -v`` (RLIMIT_AS); it returns None when nothing says, and the memory check
is then skipped.

``ulimit -v`` bounds address space, not resident memory, and a run reserves address space that it
never fills: every thread beyond the first gets a stack and, at its first allocation, a glibc malloc
arena whose 64 MiB of address space are reserved at once; a multi-threaded OpenBLAS maps a buffer of
its own. None of that is resident, so the estimate (fitted to resident peaks) leaves it out, and under
``ulimit -v`` the room is cut by it instead. Measured (VmPeak minus the VmSize at the check, minus the
estimate; 200 and 320 pixels, 2-core Xeon): 6 MiB with one thread, 76-109 MiB with two, 225-254 with
four, 567 with eight; on the 2-core AMD EPYC (159 pixels, OpenBLAS's SkylakeX kernels) 5, 137 and 275 MiB
with one, two and four -- about 80 MiB per thread beyond the first, and up to 64 MiB more once there
are several (OpenBLAS's buffers). With 32 MiB for that part, four threads under a 1.2 GB ``ulimit -v``
were let through at sizes whose peak came within 10 MiB of the limit, and one died on a CI run.
"""
import os

# Address space each thread beyond the first reserves without filling it (see the module docstring):
# its malloc arena (64 MiB), its stack (8 MiB by default) and the pool's own buffers.
THREAD_ADDRESS_SPACE = 80 * 2**20
# OpenBLAS's buffers once it runs several threads (30-57 MiB measured, see the module docstring).
BLAS_ADDRESS_SPACE = 64 * 2**20


def _read_int(path):
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_limits(root):
    """(limit file, usage file) pairs that bound this process: for each cgroup it belongs to (read
    from /proc/self/cgroup; v2's unified hierarchy and v1's memory controller), that cgroup and every
    ancestor up to the mount point -- a limit set on a parent (a Slurm job, a systemd slice, a
    Kubernetes pod) binds its children too."""
    try:
        with open(os.path.join(root, "proc/self/cgroup"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = ["0::/"]
    pairs = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2
            mount, files = "sys/fs/cgroup", ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            mount, files = "sys/fs/cgroup/memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        rel = path.strip("/")
        while True:
            folder = os.path.join(root, mount, rel)
            pairs.append((os.path.join(folder, files[0]), os.path.join(folder, files[1])))
            if not rel:
                break
            rel = os.path.dirname(rel)
    return pairs


def _cgroup_free(root="/"):
    """Room left under the tightest cgroup memory limit on this process, or None when none is set."""
    rooms = []
    for limit_path, usage_path in _cgroup_limits(root):
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and limit < 2**60:  # "max" (v2) is not a number; v1 says "no limit" with ~2^63
            rooms.append(max(0, limit - (usage or 0)))
    return min(rooms) if rooms else None


def thread_reservation(threads):
    """Address space ``threads`` CPU threads reserve beyond the first thread's (see the module docstring)."""
    extra = max(0, int(threads) - 1)
    return extra * THREAD_ADDRESS_SPACE + (BLAS_ADDRESS_SPACE if extra else 0)


def _address_space_free(root="/", threads=None):
    """Room left under ``ulimit -v`` (RLIMIT_AS) for the run's own data, or None when unlimited: the
    limit, less what the process has mapped already and what its threads will reserve (``threads``;
    None: nstyle's thread count, ``cpu/threads.py``)."""
    try:
        import resource  # noqa: PLC0415 -- POSIX only
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        with open(os.path.join(root, "proc/self/status"), encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if threads is None:
        from ...cpu.threads import num_threads  # noqa: PLC0415
        threads = num_threads()
    return max(0, soft - used - thread_reservation(threads))


def available_bytes(root="/", threads=None):
    """(bytes, source) the machine can give this process now, or (None, reason) when unknown.

    The smallest of: the kernel's MemAvailable (else free physical pages), the room under each cgroup
    memory limit on this process (v2 or v1, its own cgroup and its ancestors) and the room under
    ``ulimit -v`` (less the address space ``threads`` threads reserve; None: nstyle's thread count).
    root: where /proc and /sys are found (tests give a folder of their own).
    """
    free, source = None, None
    try:
        with open(os.path.join(root, "proc/meminfo"), encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free, source = int(line.split()[1]) * 1024, "MemAvailable"
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None and root == "/":
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            source = "free physical pages"
        except (ValueError, OSError, AttributeError):
            pass
    for room, what in ((_cgroup_free(root), "cgroup memory limit"),
                       (_address_space_free(root, threads), "address-space limit (ulimit -v)")):
        if room is not None and (free is None or room < free):
            free, source = room, what
    if free is None:
        return None, "the operating system does not say"
    return free, source


def gpu_available_bytes():
    """(bytes, 'GPU') the current CUDA device can still give: the driver's free memory plus what CuPy's
    pool holds but does not use; (None, reason) without a usable GPU (the check is then skipped)."""
    try:
        from ...backend import gpu_memory_info  # noqa: PLC0415
        info = gpu_memory_info()
    except Exception as exc:  # a broken CUDA install can raise anything
        return None, f"GPU memory unknown ({type(exc).__name__}: {exc})"
    if info is None:
        return None, "no usable GPU"
    return info["free"] + max(0, info["pool_held"] - info["pool_used"]), "GPU"
