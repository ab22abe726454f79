"""Who may call each RPC of AccessLogService: the authorization hook reads this table.

Resource checks (whose log, which request) happen in the domain; this table
only says which certificates reach each method at all: kinds of caller, and other
services by name, exactly those whose code calls the method (a unit test,
tests/unit/common/test_least_privilege.py, derives that from the code).
"""

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from services.common.auth import APP, OPERATOR, services
from services.common.runtime import method_policies

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["AccessLogService"]

POLICIES = method_policies(
    SERVICE_DESCRIPTOR,
    {
        # device-auth logs a service's read of a household's account (ExportTenant).
        "Append": services("clip-ingest", "device-auth", "relay-broker", "retention"),
        # retention copies the household's log into its export.
        "ListEntries": APP | services("retention"),
        # relay-broker keeps each privacy-watch digest with the log's head.
        "GetTreeHead": APP | services("relay-broker"),
        "GetInclusionProof": APP,
        "GetConsistencyProof": APP,
        "ListSigningKeys": APP | OPERATOR,
        "RequestOperatorAccess": OPERATOR,
        "GetOperatorAccess": APP | OPERATOR,
        "ListOperatorAccess": APP | OPERATOR,
        "DecideOperatorAccess": APP,
        "EndOperatorAccess": APP | OPERATOR,
        "DeclareIncident": OPERATOR,
        "GetIncident": OPERATOR,
        "ListIncidentNotices": APP,
    },
)
