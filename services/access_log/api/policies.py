"""Who may call each RPC of AccessLogService: the authorization hook reads this table.

Resource checks (whose log, which request) happen in the domain; this table
only says which kinds of certificate reach each method at all.
"""

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from services.common.auth import APP, OPERATOR, SERVICE
from services.common.runtime import method_policies

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["AccessLogService"]

POLICIES = method_policies(
    SERVICE_DESCRIPTOR,
    {
        "Append": SERVICE,
        "ListEntries": APP | SERVICE,
        "GetTreeHead": APP | SERVICE,
        "GetInclusionProof": APP | SERVICE,
        "GetConsistencyProof": APP | SERVICE,
        "ListSigningKeys": APP | SERVICE | OPERATOR,
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
