#!/usr/bin/env bash
# Offline checks of the Helm chart (charts/privacam), its environment values
# (deploy/helm/values-*.yaml), the image and skaffold files:
#   lint       `helm lint --strict` (with values.schema.json) for the defaults and each environment
#   typo       an unknown key in values, at three depths, fails `helm lint`
#   schema     `helm template` output valid against the Kubernetes OpenAPI schemas of the oldest
#              supported and the newest version (kubernetes-validate, strict; CRDs skipped)
#   score      kube-score on the same manifests
#   netpol     the rendered NetworkPolicies allow exactly the design's service-to-service calls
#              (clip-ingest may reach key-manager, key-manager may not reach clip-ingest, ...);
#              clients (the sources allowed on the public gRPC ports) reach device-auth's
#              enrollment port and never key-manager, and no service reaches an enrollment port
#   coturn     the coturn ConfigMap is files/turnserver.conf plus turn.deniedPeerIps, and the
#              schema refuses what coturn 4.6 misreads (CIDR, a range starting at ::)
#   rules      `promtool check rules` and `promtool test rules` on the PrometheusRule
#              (promtool from Debian's prometheus package: `bash stack/install.sh prometheus`,
#              which `make chart` runs first; without it this check FAILS)
#   secrets    each service's own Kafka user Secret and Redis URL Secret reach that service's
#              pod only (relay-broker's pod references privacam-kafka-relay-broker and no other
#              service's Kafka Secret), with default and configured names; kafka.tls.caSecret is
#              mounted as PRIVACAM_KAFKA_CA_FILE; PLAINTEXT references no Kafka Secret; the
#              `helm test` pods reference no Secret at all
#   settings   each service's settings class accepts its rendered environment (needs .venv)
#   files      docker/Dockerfile and skaffold.yaml name files and stages that exist
#
# Tools are pinned below and installed once under ${PRIVACAM_CACHE_DIR:-<repo>/.cache}/tools/
# (helm and kube-score with `go install`, kubernetes-validate with pip): the first run
# compiles for a few minutes, later runs take seconds.
#
# Usage: scripts/check_chart.sh     exit status 0 when every check passed
#        (PROMTOOL=<path> to use another promtool than the one on PATH)
set -euo pipefail

# --- pinned tools -------------------------------------------------------------------------
# Newest helm v3 the Go module proxy serves (`go list -m -versions helm.sh/helm/v3`).
HELM_VERSION=v3.22.0
# Kubernetes minor of helm v3.22.0's client-go (v0.37): helm's Makefile passes it with
# -ldflags, a bare `go install` would default to Kubernetes 1.20.
HELM_K8S_MINOR=37
# The only kube-score version the Go module proxy serves.
KUBE_SCORE_VERSION=v1.20.0
# Ships the Kubernetes 1.25-1.37 JSON schemas (kubeconform would need them from GitHub).
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VALIDATE_DEPS=(jsonschema==4.26.0 referencing==0.37.0 jsonschema-specifications==2025.9.1
  rpds-py==2026.9.1 attrs==26.1.0 pyyaml==6.0.3 packaging==26.3 typing-extensions==4.16.0
  importlib-resources==7.1.0)
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema shipped.
KUBE_VERSIONS=(1.27 1.37)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/privacam"
TOOLS="${PRIVACAM_CACHE_DIR:-$ROOT/.cache}/tools"
HELM="$TOOLS/helm-$HELM_VERSION/helm"
KUBE_SCORE="$TOOLS/kube-score-$KUBE_SCORE_VERSION/kube-score"
KV_ENV="$TOOLS/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
KV_PY="$KV_ENV/bin/python"
RELEASE=privacam
NAMESPACE=privacam

die() { echo "check_chart: $*" >&2; exit 2; }

# --- install ------------------------------------------------------------------------------
go_install() { # name version package ldflags
  local name="$1" version="$2" package="$3" ldflags="$4" dir="$TOOLS/$1-$2"
  [[ -x "$dir/$name" ]] && return 0
  command -v go >/dev/null || die "$name $version is built with Go: install Go 1.26.7+ (the platform's stated minimum; helm $HELM_VERSION needs 1.26) and retry"
  echo "check_chart: installing $name $version (go install, once; a few minutes) ..."
  rm -rf "$dir.partial" && mkdir -p "$dir.partial"
  if ! GOBIN="$dir.partial" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "$ldflags" "$package@$version" >"$dir.partial/install.log" 2>&1; then
    tail -n 30 "$dir.partial/install.log" >&2
    die "go install $package@$version failed"
  fi
  mv "$dir.partial" "$dir"
}

install_tools() {
  mkdir -p "$TOOLS"
  go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR"
  go_install kube-score "$KUBE_SCORE_VERSION" github.com/zegl/kube-score/cmd/kube-score \
    "-s -w -X main.version=$KUBE_SCORE_VERSION"
  if [[ ! -f "$KV_ENV/.complete" ]]; then
    echo "check_chart: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (pip, once) ..."
    rm -rf "$KV_ENV"
    python3 -m venv "$KV_ENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$KV_ENV/bin/pip" install --quiet --disable-pip-version-check \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "${KUBERNETES_VALIDATE_DEPS[@]}" \
      || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
    touch "$KV_ENV/.complete"
  fi
}

# --- reporting ----------------------------------------------------------------------------
passed=0
failed=0
pass() { echo "ok    $*"; passed=$((passed + 1)); }
fail() { echo "FAIL  $*"; failed=$((failed + 1)); }
# Indented details of a failure.
details() { sed -e 's/^/      /' "$@"; }

# --- value sets ---------------------------------------------------------------------------
# "defaults" is the chart alone; the others add deploy/helm/values-<set>.yaml.
VALUE_SETS=(defaults dev prod)
value_args() { # set -> VALUES_ARGS
  VALUES_ARGS=()
  [[ "$1" == defaults ]] || VALUES_ARGS=(-f "$ROOT/deploy/helm/values-$1.yaml")
}

check_lint() {
  local set log
  for set in "${VALUE_SETS[@]}"; do
    log="$WORK/lint-$set.log"
    value_args "$set"
    if "$HELM" lint --strict "$CHART" "${VALUES_ARGS[@]}" >"$log" 2>&1; then
      pass "lint: helm lint --strict ($set)"
    else
      fail "lint: helm lint --strict ($set)"; details "$log"
    fi
  done
}

check_typos() {
  # An unknown key at the top, in a service's settings and deep in networkPolicy.
  local typo key log
  for typo in imageTag=1.0 serviceDefaults.replcas=2 networkPolicy.egress.kafka.port=9093; do
    key="${typo%%=*}"; key="${key##*.}"
    log="$WORK/typo-$key.log"
    if "$HELM" lint --strict "$CHART" --set "$typo" >"$log" 2>&1; then
      fail "typo: helm lint accepted the unknown value '$typo'"; details "$log"
    elif grep -q "additional properties '$key' not allowed" "$log"; then
      pass "typo: helm lint rejects the unknown value '$typo'"
    else
      fail "typo: helm lint failed on '$typo' but not because of the unknown key"; details "$log"
    fi
  done
}

render() {
  local set log
  for set in "${VALUE_SETS[@]}"; do
    log="$WORK/template-$set.log"
    value_args "$set"
    if ! "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${VALUES_ARGS[@]}" \
      >"$WORK/$set.yaml" 2>"$log"; then
      fail "template: helm template ($set)"; details "$log"
      return 1
    fi
  done
}

check_schemas() {
  local set log
  for set in "${VALUE_SETS[@]}"; do
    log="$WORK/schema-$set.log"
    if "$KV_PY" - "$WORK/$set.yaml" "${KUBE_VERSIONS[@]}" >"$log" 2>&1 <<'PY'; then
"""Validate every rendered resource against the strict Kubernetes schemas of each version."""
import functools
import sys

import kubernetes_validate.utils as kv
import yaml

# One parse of each schema file per run, not one per resource.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

CUSTOM_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")
path, versions = sys.argv[1], sys.argv[2:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
errors, checked, skipped = [], 0, set()
for doc in docs:
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if doc["apiVersion"].startswith(CUSTOM_GROUPS):
        skipped.add(doc["kind"])
        continue
    checked += 1
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path)
            errors.append(f"{name} (Kubernetes {version}) at {where or '/'}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"{name}: {e.message}")
for error in errors:
    print(error)
note = f"; custom resources not checked: {', '.join(sorted(skipped))}" if skipped else ""
print(f"{checked} resources against Kubernetes {' and '.join(versions)}{note}")
sys.exit(1 if errors else 0)
PY
      pass "schema: $(tail -n 1 "$log") ($set)"
    else
      fail "schema: resources invalid ($set)"; details "$log"
    fi
  done
}

# kube-score checks left out, and why:
#   container-image-pull-policy  images are pinned by digest or immutable tag; Always would make
#                                every pod start depend on the registry.
#   deployment-replicas (dev)    development runs one replica of each service.
KUBE_SCORE_IGNORED=(container-image-pull-policy)
check_score() {
  local set log t args
  for set in "${VALUE_SETS[@]}"; do
    log="$WORK/score-$set.log"
    args=()
    for t in "${KUBE_SCORE_IGNORED[@]}"; do args+=(--ignore-test "$t"); done
    [[ "$set" == dev ]] && args+=(--ignore-test deployment-replicas)
    if "$KUBE_SCORE" score --output-format ci --kubernetes-version "v${KUBE_VERSIONS[0]}" \
      --enable-optional-test container-seccomp-profile \
      --enable-optional-test container-ports-check \
      --exit-one-on-warning "${args[@]}" "$WORK/$set.yaml" >"$log" 2>&1; then
      pass "score: kube-score, no critical or warning finding ($set)"
    else
      fail "score: kube-score ($set)"; grep -v '^\[OK\]' "$log" | details
    fi
  done
}

check_netpol() {
  local set log
  for set in "${VALUE_SETS[@]}"; do
    log="$WORK/netpol-$set.log"
    if "$KV_PY" - "$WORK/$set.yaml" "$NAMESPACE" >"$log" 2>&1 <<'PY'; then
"""Evaluate the rendered NetworkPolicies between pods, as a CNI would.

A connection is allowed when the egress policies of the source and the ingress
policies of the destination both allow it. Peers the evaluation cannot place
(ipBlock, since pod addresses are unknown here) count as matching when a flow
must be denied and as not matching when it must be allowed, except for an
external client made from an ipBlock peer, which that peer matches.

Clients (cameras and apps) are made from the peers the public services' gRPC
ingress rules allow besides the services themselves: one pod (or external
address) per peer, or a pod of an unrelated namespace when a rule allows any.
"""
import sys
from dataclasses import dataclass, field

import yaml

# The design's service-to-service calls; every other pair must be denied.
CALLS = {
    ("clip-ingest", "key-manager"), ("clip-ingest", "device-auth"),
    ("relay-broker", "device-auth"),
    ("retention", "key-manager"), ("retention", "device-auth"), ("retention", "clip-ingest"),
    ("clip-ingest", "access-log"), ("relay-broker", "access-log"),
    ("retention", "access-log"), ("device-auth", "access-log"),
}
# Services cameras and apps call on the gRPC port, and the one that also serves the
# enrollment port (server-authenticated TLS, no client certificate).
PUBLIC = {"device-auth", "clip-ingest", "relay-broker", "retention", "access-log"}
ENROLLMENT = {"device-auth"}

path, namespace = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
policies = [d for d in docs if d["kind"] == "NetworkPolicy"]


@dataclass
class Pod:
    name: str
    ns: str
    labels: dict
    ports: dict = field(default_factory=dict)
    ns_extra: dict = field(default_factory=dict)
    external: bool = False  # an address outside the cluster, matched by ipBlock peers only
    over_tls: bool = False  # a test pod that also calls its service's gRPC port

    @property
    def ns_labels(self):
        return {**self.ns_extra, "kubernetes.io/metadata.name": self.ns}


def selects(selector, labels):
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) \
                or (op == "NotIn" and key in labels and labels[key] in values) \
                or (op == "Exists" and key not in labels) \
                or (op == "DoesNotExist" and key in labels):
            return False
    return True


def peer_matches(peer, pod, policy_ns, worst_case):
    if "ipBlock" in peer:
        return pod.external or worst_case
    if pod.external:
        return False
    ns_ok = selects(peer["namespaceSelector"], pod.ns_labels) if "namespaceSelector" in peer \
        else pod.ns == policy_ns
    return ns_ok and selects(peer.get("podSelector") or {}, pod.labels)


def port_matches(rule_ports, number, name):
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        port = p.get("port")
        if port is None or port in (number, name) \
                or (isinstance(port, int) and port <= number <= p.get("endPort", port)):
            return True
    return False


def policy_types(policy):
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def allows(direction, subject, other, number, name, worst_case):
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p for p in policies
        if p["metadata"].get("namespace", namespace) == subject.ns
        and selects(p["spec"].get("podSelector") or {}, subject.labels)
        and direction in policy_types(p)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            if not port_matches(rule.get("ports"), number, name):
                continue
            peers = rule.get(peers_key)
            if not peers or any(peer_matches(pe, other, subject.ns, worst_case) for pe in peers):
                return True
    return False


def reaches(src, dst, port_name, worst_case):
    number = dst.ports[port_name]
    return allows("Egress", src, dst, number, port_name, worst_case) \
        and allows("Ingress", dst, src, number, port_name, worst_case)


services = {}
tests = []
for d in docs:
    if d["kind"] == "Deployment":
        template = d["spec"]["template"]
        labels = template["metadata"]["labels"]
        ports = {p["name"]: p["containerPort"]
                 for c in template["spec"]["containers"] for p in c.get("ports", [])}
        services[labels["app.kubernetes.io/component"]] = Pod(d["metadata"]["name"], namespace, labels, ports)
    elif d["kind"] == "Pod" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "test":
        args = d["spec"]["containers"][0].get("command") or []
        tests.append(Pod(d["metadata"]["name"], namespace, d["metadata"]["labels"], over_tls="--mtls" in args))
outsider = Pod("intruder", "elsewhere", {"app": "intruder"})


def satisfying(selector):
    """Labels a selector selects (matchLabels, and In/Exists expressions)."""
    labels = dict(selector.get("matchLabels") or {})
    for expr in selector.get("matchExpressions") or []:
        if expr["operator"] == "In":
            labels[expr["key"]] = expr["values"][0]
        elif expr["operator"] == "Exists":
            labels[expr["key"]] = "x"
    return labels


def client_for(peer, policy_ns, n):
    if "ipBlock" in peer:
        return Pod(f"client-{n}", "external", {}, external=True)
    if "namespaceSelector" in peer:
        ns_extra = satisfying(peer["namespaceSelector"])
        ns = ns_extra.get("kubernetes.io/metadata.name", "clients")
    else:
        ns_extra, ns = {}, policy_ns
    return Pod(f"client-{n}", ns, satisfying(peer.get("podSelector") or {}), ns_extra=ns_extra)


def is_release_pod(pod):
    """A pod made from a peer selecting one of the services (a caller) or a test pod."""
    return pod.ns == namespace and bool(pod.labels) and any(
        all(s.labels.get(k) == v for k, v in pod.labels.items())
        for s in [*services.values(), *tests])


clients = []
for name in sorted(PUBLIC & set(services)):
    pod = services[name]
    for policy in policies:
        if not selects(policy["spec"].get("podSelector") or {}, pod.labels) \
                or "Ingress" not in policy_types(policy):
            continue
        policy_ns = policy["metadata"].get("namespace", namespace)
        for rule in policy["spec"].get("ingress") or []:
            if not port_matches(rule.get("ports"), pod.ports["grpc"], "grpc"):
                continue
            candidates = [client_for(pe, policy_ns, len(clients)) for pe in rule.get("from") or []] \
                if rule.get("from") else [outsider]
            for c in candidates:
                if not is_release_pod(c) and all(
                        (c.ns, c.labels, c.ns_extra, c.external) != (o.ns, o.labels, o.ns_extra, o.external)
                        for o in clients):
                    clients.append(c)

problems, lines = [], []
if not policies:
    problems.append("no NetworkPolicy rendered: networkPolicy.enabled must stay on")
for name, pod in sorted(services.items()):
    if not any(selects(p["spec"].get("podSelector") or {}, pod.labels)
               and {"Ingress", "Egress"} <= set(policy_types(p)) for p in policies):
        problems.append(f"{name}: no policy denies its ingress and egress by default")
for src in sorted(services):
    for dst in sorted(services):
        if src == dst:
            continue
        a, b = services[src], services[dst]
        if (src, dst) in CALLS:
            ok = reaches(a, b, "grpc", worst_case=False)
            verdict = "allowed" if ok else "DENIED, but the design needs it"
        else:
            ok = not reaches(a, b, "grpc", worst_case=True)
            verdict = "denied" if ok else "ALLOWED, but the design forbids it"
        line = f"{src} -> {dst}:{b.ports['grpc']} {verdict}"
        (lines if ok else problems).append(line)
key_manager = services.get("key-manager")
if key_manager and reaches(outsider, key_manager, "grpc", worst_case=True):
    problems.append("a pod of another namespace can reach key-manager's gRPC port")

# Enrollment: only the designed services have the port; the clients allowed on the public
# gRPC ports, and only those, reach it; no service reaches it; key-manager stays private.
for name, pod in sorted(services.items()):
    if ("enroll" in pod.ports) != (name in ENROLLMENT):
        problems.append(f"{name}: {'has' if 'enroll' in pod.ports else 'lacks'} the enrollment port `enroll`")
if not clients:
    problems.append("no client (camera or app) may reach any public gRPC port")
enroll = {n: services[n] for n in sorted(ENROLLMENT & set(services)) if "enroll" in services[n].ports}
for c in clients:
    where = "an external address" if c.external else f"a pod in namespace {c.ns} labelled {c.labels}"
    for name in sorted(PUBLIC & set(services)):
        if not reaches(c, services[name], "grpc", worst_case=False):
            problems.append(f"client ({where}) cannot reach {name}'s gRPC port")
    for name, pod in enroll.items():
        if not reaches(c, pod, "enroll", worst_case=False):
            problems.append(f"client ({where}) cannot reach {name}'s enrollment port")
    if key_manager and reaches(c, key_manager, "grpc", worst_case=True):
        problems.append(f"client ({where}) can reach key-manager's gRPC port")
for name, pod in enroll.items():
    # Same sources as the public gRPC port (callers aside): a pod the gRPC rule refuses is refused.
    if reaches(outsider, pod, "enroll", worst_case=False) != reaches(outsider, pod, "grpc", worst_case=False):
        problems.append(f"{name}: the enrollment port and the gRPC port admit different outside pods")
    for src, src_pod in sorted(services.items()):
        if src != name and reaches(src_pod, pod, "enroll", worst_case=True):
            problems.append(f"{src} -> {name}:{pod.ports['enroll']} (enrollment) ALLOWED, but services never enroll")
if clients and not problems:
    for name, pod in enroll.items():
        lines.append(f"{len(clients)} client(s) -> {name}:{pod.ports['enroll']} allowed")
    if key_manager:
        lines.append(f"{len(clients)} client(s) -> key-manager:{key_manager.ports['grpc']} denied")
by_deployment = {pod.name: component for component, pod in services.items()}
for test in tests:
    target = by_deployment.get(test.name.removesuffix("-test"))
    if target is None:
        problems.append(f"helm test pod {test.name} tests no Deployment")
    elif not reaches(test, services[target], "health", worst_case=False):
        problems.append(f"helm test pod {test.name} cannot reach {target}'s health port")
    elif test.over_tls and not reaches(test, services[target], "grpc", worst_case=False):
        problems.append(f"helm test pod {test.name} calls {target} over mTLS but cannot reach its gRPC port")

for line in lines:
    if line.startswith(("clip-ingest -> key-manager", "key-manager -> clip-ingest")) or "client(s)" in line:
        print(line)
for problem in problems:
    print("problem:", problem)
pairs = sum(1 for line in lines if "client(s)" not in line)
print(f"{pairs} of {len(services) * (len(services) - 1)} service pairs as designed")
sys.exit(1 if problems else 0)
PY
      pass "netpol: $(tail -n 1 "$log"): $(grep -E '^(clip-ingest -> key-manager|key-manager -> clip-ingest|[0-9]+ client)' "$log" | paste -sd ';' | sed 's/;/; /g') ($set)"
    else
      fail "netpol: NetworkPolicies do not match the design ($set)"; details "$log"
    fi
  done
}

check_rules() {
  local promtool="${PROMTOOL:-}"
  [[ -n "$promtool" ]] || promtool="$(command -v promtool || true)"
  [[ -z "$promtool" && -x /usr/bin/promtool ]] && promtool=/usr/bin/promtool
  if [[ ! -x "$promtool" ]]; then
    fail "rules: promtool not found: run 'bash stack/install.sh prometheus' (Debian's prometheus package)"
    return
  fi
  # The rule unit tests expect the default thresholds and this release name and namespace.
  if ! "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
    --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml \
    >"$WORK/prometheusrule.yaml" 2>"$WORK/rules.log"; then
    fail "rules: helm template of the PrometheusRule"; details "$WORK/rules.log"
    return
  fi
  # promtool reads a plain rule file: the PrometheusRule's spec.
  if ! "$KV_PY" - "$WORK/prometheusrule.yaml" "$WORK/rules.yaml" >"$WORK/rules.log" 2>&1 <<'PY'; then
import sys

import yaml

rule = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d)
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False)
PY
    fail "rules: extracting the rule groups from the PrometheusRule"; details "$WORK/rules.log"
    return
  fi
  if "$promtool" check rules "$WORK/rules.yaml" >"$WORK/rules.log" 2>&1; then
    pass "rules: promtool check rules: $(grep -o 'SUCCESS: [0-9]* rules found' "$WORK/rules.log")"
  else
    fail "rules: promtool check rules"; details "$WORK/rules.log"
  fi
  cp "$CHART/ci/prometheusrule.test.yaml" "$WORK/prometheusrule.test.yaml"
  if (cd "$WORK" && "$promtool" test rules prometheusrule.test.yaml) >"$WORK/rules-test.log" 2>&1; then
    pass "rules: promtool test rules (charts/privacam/ci/prometheusrule.test.yaml)"
  else
    fail "rules: promtool test rules"; details "$WORK/rules-test.log"
  fi
}

check_secrets() {
  # Two more renders: every per-service Secret named in values, and a PLAINTEXT broker.
  local services=(device-auth key-manager clip-ingest relay-broker retention access-log privacy-watch) svc named=() set
  for svc in "${services[@]}"; do
    named+=(--set "kafka.existingSecrets.$svc.name=kafka-user-$svc"
      --set "kafka.existingSecrets.$svc.usernameKey=user" --set "kafka.existingSecrets.$svc.passwordKey=pass")
  done
  for svc in device-auth clip-ingest relay-broker retention; do
    named+=(--set "redis.existingSecrets.$svc.name=redis-user-$svc")
  done
  if ! "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${named[@]}" \
    --set kafka.tls.caSecret.name=kafka-brokers-ca >"$WORK/named.yaml" 2>"$WORK/secrets.log" \
    || ! "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
    --set kafka.securityProtocol=PLAINTEXT --set kafka.tls.caSecret.name=kafka-brokers-ca \
    >"$WORK/plaintext.yaml" 2>>"$WORK/secrets.log"; then
    fail "secrets: helm template with named Secrets or PLAINTEXT"; details "$WORK/secrets.log"
    return
  fi
  for set in "${VALUE_SETS[@]}" named plaintext; do
    if "$KV_PY" - "$WORK/$set.yaml" "$set" "$RELEASE" >"$WORK/secrets-$set.log" 2>&1 <<'PY'; then
"""Each per-service Secret is referenced by its own service's pod and by no other pod."""
import sys

import yaml

path, value_set, fullname = sys.argv[1], sys.argv[2], sys.argv[3]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
SERVICES = ("device-auth", "key-manager", "clip-ingest", "relay-broker", "retention", "access-log", "privacy-watch")
REDIS = ("device-auth", "clip-ingest", "relay-broker", "retention")
named = value_set == "named"
plaintext = value_set == "plaintext"


def kafka_secret(svc):
    return f"kafka-user-{svc}" if named else f"{fullname}-kafka-{svc}"


def redis_secret(svc):
    return f"redis-user-{svc}" if named else f"{fullname}-redis-{svc}"


def references(spec):
    """Every Secret a pod spec names: env, envFrom, volumes (projected too)."""
    found = {}  # secret -> set of how
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for var in c.get("env") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                found.setdefault(ref["name"], set()).add(f"env {var['name']} (key {ref['key']})")
        for source in c.get("envFrom") or []:
            if "secretRef" in source:
                found.setdefault(source["secretRef"]["name"], set()).add("envFrom")
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            found.setdefault(volume["secret"]["secretName"], set()).add(f"volume {volume['name']}")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                found.setdefault(source["secret"]["name"], set()).add(f"volume {volume['name']}")
    return found


pods, tests, config = {}, {}, {}
for d in docs:
    if d["kind"] == "Deployment":
        component = d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        pods[component] = d["spec"]["template"]["spec"]
    elif d["kind"] == "Pod" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "test":
        tests[d["metadata"]["name"]] = d["spec"]
    elif d["kind"] == "ConfigMap" and "app.kubernetes.io/component" in d["metadata"].get("labels", {}):
        config[d["metadata"]["labels"]["app.kubernetes.io/component"]] = d.get("data") or {}

problems = []
if set(pods) != set(SERVICES):
    problems.append(f"Deployments {sorted(pods)}, expected {sorted(SERVICES)}")
refs = {svc: references(spec) for svc, spec in pods.items()}
owners = {}  # per-service Secret -> its one service
for svc in SERVICES:
    if not plaintext:
        owners[kafka_secret(svc)] = svc
    if svc in REDIS:
        owners[redis_secret(svc)] = svc
for svc, found in sorted(refs.items()):
    env = {}
    for c in pods[svc]["containers"]:
        for var in c.get("env") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                env[var["name"]] = (ref["name"], ref["key"])
    for secret, how in sorted(found.items()):
        owner = owners.get(secret)
        if owner is not None and owner != svc:
            problems.append(f"{svc}'s pod references {owner}'s Secret {secret} ({', '.join(sorted(how))})")
        if "kafka" in secret and secret not in (kafka_secret(svc), "kafka-brokers-ca", "privacam-kafka-ca"):
            problems.append(f"{svc}'s pod references the Kafka Secret {secret}, not its own")
    kafka_env = {n: v for n, v in env.items() if n.startswith("PRIVACAM_KAFKA_")}
    if plaintext:
        if kafka_env:
            problems.append(f"{svc}: PLAINTEXT, yet the pod gets {sorted(kafka_env)} from Secrets")
        if any("kafka" in s for s in found):
            problems.append(f"{svc}: PLAINTEXT, yet the pod references {sorted(s for s in found if 'kafka' in s)}")
        if config.get(svc, {}).get("PRIVACAM_KAFKA_SECURITY_PROTOCOL") != "PLAINTEXT":
            problems.append(f"{svc}: PRIVACAM_KAFKA_SECURITY_PROTOCOL is not PLAINTEXT")
    else:
        keys = ("user", "pass") if named else ("username", "password")
        expected = {
            "PRIVACAM_KAFKA_USERNAME": (kafka_secret(svc), keys[0]),
            "PRIVACAM_KAFKA_PASSWORD": (kafka_secret(svc), keys[1]),
        }
        if kafka_env != expected:
            problems.append(f"{svc}: Kafka user from {kafka_env}, expected {expected}")
        if config.get(svc, {}).get("PRIVACAM_KAFKA_SECURITY_PROTOCOL") != "SASL_SSL":
            problems.append(f"{svc}: PRIVACAM_KAFKA_SECURITY_PROTOCOL is not SASL_SSL")
    redis_env = {n: v for n, v in env.items() if n.endswith("_REDIS_URL")}
    want = {f"PRIVACAM_{svc.upper().replace('-', '_')}_REDIS_URL": (redis_secret(svc), "url")} if svc in REDIS else {}
    if redis_env != want:
        problems.append(f"{svc}: Redis URL from {redis_env}, expected {want}")
    # The brokers' CA: mounted where PRIVACAM_KAFKA_CA_FILE says, from kafka.tls.caSecret.
    ca_name = {"named": "kafka-brokers-ca", "dev": "privacam-kafka-ca", "prod": "privacam-kafka-ca"}.get(value_set)
    ca_file = config.get(svc, {}).get("PRIVACAM_KAFKA_CA_FILE")
    if ca_name is None:
        if ca_file or any(s in found for s in ("kafka-brokers-ca", "privacam-kafka-ca")):
            problems.append(f"{svc}: a Kafka CA without kafka.tls.caSecret, or with PLAINTEXT")
    else:
        volumes = {v["name"]: v for v in pods[svc].get("volumes") or []}
        mounts = {m["mountPath"]: m["name"] for c in pods[svc]["containers"] for m in c.get("volumeMounts") or []}
        directory, _, file = (ca_file or "").rpartition("/")
        volume = volumes.get(mounts.get(directory, ""), {}).get("secret", {})
        items = {i["path"]: i["key"] for i in volume.get("items") or []}
        if volume.get("secretName") != ca_name or items.get(file) != "ca.crt":
            problems.append(f"{svc}: PRIVACAM_KAFKA_CA_FILE={ca_file} is not Secret {ca_name}'s ca.crt")
# Test pods hold the test identity only (no kind any service admits), never a service's
# Secret; with cert-manager (prod) they call the gRPC ports with it.
for name, spec in sorted(tests.items()):
    found = set(references(spec))
    if found - {f"{fullname}-test-tls"}:
        problems.append(f"helm test pod {name} references Secrets {sorted(found)}")
    if (value_set == "prod") != bool(found):
        problems.append(f"helm test pod {name}: test identity {'missing' if not found else 'unexpected'} ({value_set})")
for problem in problems:
    print("problem:", problem)
print(f"{len(pods)} pods, {len(owners)} per-service Secrets, {len(tests)} test pods")
sys.exit(1 if problems else 0)
PY
      pass "secrets: each Kafka user and Redis URL Secret reaches its own service's pod only; test pods the test identity only ($set)"
    else
      fail "secrets: per-service Secrets cross pods or are missing ($set)"; details "$WORK/secrets-$set.log"
    fi
  done
}

check_settings() {
  local py="$ROOT/.venv/bin/python"
  if [[ ! -x "$py" ]] || [[ ! -d "$ROOT/gen" ]]; then
    fail "settings: no .venv or gen/: run 'make setup' (the services' settings classes load from them)"
    return
  fi
  # The project's environment has no YAML parser: hand it JSON.
  "$KV_PY" -c 'import json, sys, yaml
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    json.dump(docs, open(path[:-5] + ".json", "w"))' "$WORK/dev.yaml" "$WORK/prod.yaml"
  if (cd "$ROOT" && "$py" - "$WORK/dev.json" "$WORK/prod.json") >"$WORK/settings.log" 2>&1 <<'PY'; then
"""Load each service's settings class from the environment its pod would get."""
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

from services.common.settings import SettingsError, load_settings

# Stand-ins for Secret values, valid for the settings' formats.
FAKE_SECRETS = {
    "PRIVACAM_DEVICE_AUTH_REDIS_URL": "redis://device_auth:pw@redis:6379/0",
    "PRIVACAM_CLIP_INGEST_REDIS_URL": "redis://clip_ingest:pw@redis:6379/0",
    "PRIVACAM_RELAY_BROKER_REDIS_URL": "redis://relay_broker:pw@redis:6379/0",
    "PRIVACAM_RETENTION_REDIS_URL": "redis://retention:pw@redis:6379/0",
    "PRIVACAM_MINIO_ACCESS_KEY": "access-key-0123456789",
    "PRIVACAM_MINIO_SECRET_KEY": "secret-key-0123456789",
    "PRIVACAM_TURN_SHARED_SECRET": "turn-shared-secret-0123456789",
    "PRIVACAM_KAFKA_USERNAME": "privacam-service",
    "PRIVACAM_KAFKA_PASSWORD": "kafka-password-0123456789",
}
failures = 0
files = Path(tempfile.mkdtemp())
for path in sys.argv[1:]:
    docs = json.load(open(path))
    config = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap" and "data" in d}
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        container = d["spec"]["template"]["spec"]["containers"][0]
        env = {}
        for source in container.get("envFrom", []):
            env.update(config[source["configMapRef"]["name"]])
        for var in container.get("env", []):
            env[var["name"]] = FAKE_SECRETS[var["name"]]
        # Mounted files exist in the pod; create them so path settings validate.
        for name, value in list(env.items()):
            if name.endswith("_FILE"):
                local = files / value.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.touch()
                env[name] = str(local)
        module = container["command"][0].removeprefix("privacam-").replace("-", "_")
        settings_module = importlib.import_module(f"services.{module}.settings")
        cls = next(v for k, v in vars(settings_module).items() if k.endswith("Settings") and k != "ServiceSettings" and v.__module__ == settings_module.__name__)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        # Variables the settings do not know are silently ignored at start-up: a typo in the
        # chart would lose a setting, so each one is an error.
        known = set()
        for field, info in cls.model_fields.items():
            nested = info.annotation
            if isinstance(nested, type) and hasattr(nested, "model_fields"):
                prefix = nested.model_config.get("env_prefix", "")
                known |= {(prefix + f).upper() for f in nested.model_fields}
            else:
                known.add((cls.model_config.get("env_prefix", "") + field).upper())
        for name in sorted(n for n in env if n.startswith("PRIVACAM_") and n not in known):
            failures += 1
            print(f"{Path(path).stem}: {module}: the chart sets {name}, which its settings do not read")
        try:
            load_settings(cls)
            print(f"{Path(path).stem}: {module} loads its environment")
        except SettingsError as e:
            failures += 1
            print(f"{Path(path).stem}: {module}: {e}")
        finally:
            os.environ.clear()
            os.environ.update(saved)
sys.exit(1 if failures else 0)
PY
    pass "settings: every service loads its rendered environment and reads every PRIVACAM_ variable (dev, prod)"
  else
    fail "settings: the rendered environments and the services' settings disagree"; details "$WORK/settings.log"
  fi
}

check_coturn() {
  # The ConfigMap is files/turnserver.conf (proved against a real coturn by
  # tests/integration/test_coturn.py) plus one denied-peer-ip line per turn.deniedPeerIps entry.
  local ips='["198.41.0.4","2a00:1450:4001::-2a00:1450:4001:ffff:ffff:ffff:ffff:ffff"]' bad
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set-json "turn.deniedPeerIps=$ips" \
    --show-only templates/coturn-configmap.yaml >"$WORK/coturn.yaml" 2>"$WORK/coturn.log" \
    && "$KV_PY" - "$WORK/coturn.yaml" "$CHART/files/turnserver.conf" "$ips" >>"$WORK/coturn.log" 2>&1 <<'PY'; then
"""The rendered turnserver.conf is the production file followed by the deployment's lines."""
import json
import sys

import yaml

rendered = yaml.safe_load(open(sys.argv[1]))["data"]["turnserver.conf"]
production = open(sys.argv[2]).read()
ips = json.loads(sys.argv[3])
if not rendered.startswith(production):
    sys.exit("the ConfigMap's turnserver.conf does not start with files/turnserver.conf")
added = [line for line in rendered[len(production):].splitlines() if line and not line.startswith("#")]
expected = [f"denied-peer-ip={ip}" for ip in ips]
if added != expected:
    sys.exit(f"lines after files/turnserver.conf: {added}, expected {expected}")
PY
    pass "coturn: the ConfigMap is files/turnserver.conf plus a denied-peer-ip line per turn.deniedPeerIps entry"
  else
    fail "coturn: turn.deniedPeerIps not rendered as denied-peer-ip lines"; details "$WORK/coturn.log"
  fi
  # coturn 4.6 reads no CIDR, and a range from :: refuses every IPv4 peer: the schema says no.
  for bad in 10.0.0.0/8 ::-::ffff:ffff; do
    if "$HELM" lint --strict "$CHART" --set-json "turn.deniedPeerIps=[\"$bad\"]" >"$WORK/coturn-lint.log" 2>&1; then
      fail "coturn: helm lint accepted turn.deniedPeerIps=[$bad]"
    elif grep -q "/turn/deniedPeerIps/0" "$WORK/coturn-lint.log"; then
      pass "coturn: helm lint rejects turn.deniedPeerIps=[$bad]"
    else
      fail "coturn: helm lint failed on turn.deniedPeerIps=[$bad], not for that value"; details "$WORK/coturn-lint.log"
    fi
  done
}

check_files() {
  if "$KV_PY" - "$ROOT" >"$WORK/files.log" 2>&1 <<'PY'; then
"""The Dockerfile's COPY sources and skaffold.yaml's paths and target exist."""
import re
import sys
from pathlib import Path

import yaml

root = Path(sys.argv[1])
problems = []
dockerfile = (root / "docker/Dockerfile").read_text()
stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.M | re.I))
for line in re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile, re.M):
    for src in [w for w in line.split() if not w.startswith("--")][:-1]:
        if not (root / src).exists():
            problems.append(f"docker/Dockerfile copies {src}, which does not exist")
config = yaml.safe_load((root / "skaffold.yaml").read_text())
paths = []
for artifact in config["build"]["artifacts"]:
    paths.append(Path(artifact.get("context", ".")) / artifact["docker"]["dockerfile"])
    if artifact["docker"].get("target") not in stages:
        problems.append(f"skaffold.yaml builds target {artifact['docker'].get('target')}, not a stage of the Dockerfile")
for release in config["deploy"]["helm"]["releases"]:
    paths += [Path(release["chartPath"])] + [Path(p) for p in release.get("valuesFiles", [])]
for profile in config.get("profiles", []):
    for patch in profile.get("patches", []):
        if patch["path"].endswith("/valuesFiles/-"):
            paths.append(Path(patch["value"]))
for p in paths:
    if not (root / p).exists():
        problems.append(f"skaffold.yaml names {p}, which does not exist")
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
PY
    pass "files: docker/Dockerfile and skaffold.yaml name files and stages that exist"
  else
    fail "files: docker/Dockerfile or skaffold.yaml"; details "$WORK/files.log"
  fi
}

check_pod_options() {
  # OpenShift (security contexts without fixed ids), extra env and volumes, the drain's
  # timing: rendered where they belong, validated against the Kubernetes schema, and a grace
  # period too short for preStop + drain refused.
  local log="$WORK/pod-options.log" out="$WORK/pod-options.yaml"
  if ! "$HELM" template privacam "$CHART" --namespace privacam \
    --set podSecurityContext.runAsUser=null --set podSecurityContext.runAsGroup=null \
    --set podSecurityContext.fsGroup=null --set containerSecurityContext.runAsUser=null \
    --set containerSecurityContext.runAsGroup=null \
    --set 'serviceDefaults.extraEnv[0].name=HTTPS_PROXY' \
    --set 'serviceDefaults.extraEnv[0].value=http://proxy:3128' \
    --set 'services.retention.extraVolumes[0].name=exports' \
    --set 'services.retention.extraVolumes[0].emptyDir.sizeLimit=1Gi' \
    --set 'services.retention.extraVolumeMounts[0].name=exports' \
    --set 'services.retention.extraVolumeMounts[0].mountPath=/exports' \
    --set preStopSleepSeconds=7 >"$out" 2>"$log"; then
    fail "pod options: helm template with OpenShift contexts, extraEnv and extra volumes"; details "$log"
    return
  fi
  if ! "$KV_PY" - "$out" >"$log" 2>&1 <<'PY'; then
"""Every Deployment carries the overrides; no fixed ids; retention alone gets the volume."""
import sys

import yaml

problems = []
deployments = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"]
for d in deployments:
    name, spec = d["metadata"]["name"], d["spec"]["template"]["spec"]
    container = spec["containers"][0]
    if {"runAsUser", "runAsGroup", "fsGroup"} & set(spec["securityContext"]):
        problems.append(f"{name}: the pod securityContext keeps a fixed id")
    if {"runAsUser", "runAsGroup"} & set(container["securityContext"]):
        problems.append(f"{name}: the container securityContext keeps a fixed id")
    if not container["securityContext"].get("readOnlyRootFilesystem"):
        problems.append(f"{name}: the rest of the container securityContext was lost")
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    if env.get("HTTPS_PROXY") != "http://proxy:3128":
        problems.append(f"{name}: extraEnv missing")
    if container["lifecycle"]["preStop"]["exec"]["command"] != ["sleep", "7"]:
        problems.append(f"{name}: preStop is not a 7 s sleep")
    mounts = {m["name"] for m in container.get("volumeMounts") or []}
    volumes = {v["name"] for v in spec.get("volumes") or []}
    retention = name.endswith("-retention")
    if ("exports" in mounts) != retention or ("exports" in volumes) != retention:
        problems.append(f"{name}: the extra volume is {'missing' if retention else 'present'}")
for problem in problems:
    print("problem:", problem)
print(f"{len(deployments)} Deployments")
sys.exit(1 if problems or len(deployments) != 7 else 0)
PY
    fail "pod options: rendered Deployments"; details "$log"
    return
  fi
  # helm template, not lint: lint reports a template's `fail` as INFO and passes.
  if "$HELM" template privacam "$CHART" --set terminationGracePeriodSeconds=14 >"$log" 2>&1; then
    fail "pod options: helm template accepted a grace period shorter than preStop + drain (14 s)"
  elif grep -q "must exceed preStopSleepSeconds + shutdownGraceSeconds" "$log"; then
    pass "pod options: OpenShift security contexts, extraEnv, extra volumes and preStop render; a 14 s grace period is refused"
  else
    fail "pod options: helm template failed on terminationGracePeriodSeconds=14 for another reason"; details "$log"
  fi
}

main() {
  local started=$SECONDS
  install_tools
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  echo "check_chart: helm $HELM_VERSION, kube-score $KUBE_SCORE_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  check_lint
  check_typos
  if render; then
    check_schemas
    check_score
    check_netpol
    check_secrets
    check_settings
  fi
  check_pod_options
  check_coturn
  check_rules
  check_files
  echo "check_chart: $((SECONDS - started)) s"
  echo "$passed passed, $failed failed"
  if ((failed > 0)); then
    echo "check_chart: $failed check(s) failed (details above)" >&2
    exit 1
  fi
}

main "$@"
