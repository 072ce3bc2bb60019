"""Runs scim2-tester (an RFC 7643/7644 compliance checker lintel did not write) against a
running lintel, and prints each check's status, title and reason as JSON lines.

Usage: python3 scim_tester.py <SCIM base URL> <token>
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server

base, token = sys.argv[1], sys.argv[2]
http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
client = SyncSCIMClient(http)
for result in check_server(client):
    print(
        json.dumps(
            {
                "status": result.status.name,
                "title": result.title,
                "resource_type": result.resource_type,
                "reason": result.reason,
            }
        ),
        flush=True,
    )
