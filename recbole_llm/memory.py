"""Peak resident memory of this process, per run or per stage (Linux; imports nothing heavy)."""

import resource


def peak_rss_mb() -> float:
    """Peak resident set size in MiB since the process started or since :func:`reset_peak_rss`."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def reset_peak_rss() -> bool:
    """Restart the peak measurement (``/proc/self/clear_refs``); False where the OS does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
