from __future__ import annotations

from wheelport.cli import main

if __name__ == "__main__":
    main()
