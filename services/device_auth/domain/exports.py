"""A household's account for its own data export: logged in its access log, then read.

The export's builder (retention) asks for everything device_auth holds about a household.
That read is an access to the household's data like any other, so the household's log
names it, the export it is for and the service that asked, before anything is answered:
with the log out of reach nothing is read.
"""

from __future__ import annotations

from services.device_auth.domain import validation
from services.device_auth.domain.ports import AccountReads
from services.device_auth.domain.service import DeviceAuth, TenantExport


class TenantExporter:
    def __init__(self, auth: DeviceAuth, reads: AccountReads) -> None:
        self._auth = auth
        self._reads = reads

    async def export(self, tenant_id: str, export_id: str, reader: str) -> TenantExport:
        validation.identifier(tenant_id, "tenant_id")
        validation.identifier(export_id, "export_id")
        await self._auth.get_account(tenant_id)  # NOT_FOUND before anything is logged
        await self._reads.record_export_read(tenant_id, export_id, reader)
        return await self._auth.export_tenant(tenant_id)
