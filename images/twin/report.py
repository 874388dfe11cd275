"""One PASS/FAIL line per check as it is decided, and the final line."""

from __future__ import annotations


class Report:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    def seen(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.results)

    def finish(self, seconds: float) -> int:
        failed = [name for name, ok, _ in self.results if not ok]
        total = len(self.results)
        if failed:
            print(f"twin: {len(failed)} of {total} checks FAILED ({', '.join(failed)}) in {seconds:.0f} s")
        else:
            print(f"twin: all {total} checks passed in {seconds:.0f} s")
        return len(failed)
