"""The image's HEALTHCHECK: exit 0 when lossd answers /readyz with 200 (the image has no curl)."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('LOSSD_PORT', '8000')}/readyz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:  # refused, timed out, or an HTTP error such as 503 while warming up
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
