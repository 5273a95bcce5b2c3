from __future__ import annotations

from wheelport.cli import run

if __name__ == "__main__":
    run()
