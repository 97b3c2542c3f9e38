# hb — make demo | make check | make deb
PYTHON  = /usr/bin/python3
export PYTHONPATH := $(CURDIR)/lib
export PATH := $(CURDIR)/bin:$(PATH)

# Debian packages the code, the tests, the demo and the packaging need.
RUN_DEPS  = python3-serial python3-pyroute2 python3-docopt python3-daemon iproute2
TEST_DEPS = python3-pytest python3-hypothesis python3-aiosmtpd flake8 socat \
            iputils-ping tcpdump procps psmisc util-linux heartbeat resource-agents \
            keepalived ucarp stress-ng python3-matplotlib nftables time \
            corosync pacemaker pacemaker-cli-utils debootstrap $(DEB_DEPS)
DEB_DEPS  = debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
            lintian devscripts build-essential fakeroot

.PHONY: deps deb-deps check test lint demo deb bench clean

deps:
	@missing=$$(for p in $(RUN_DEPS) $(TEST_DEPS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends $$missing >/dev/null; \
	fi
	@# heartbeat/keepalived are test peers only: never let them run as services here
	-@for s in heartbeat keepalived ucarp corosync pacemaker; do \
	  systemctl disable --now $$s >/dev/null 2>&1 || true; done

deb-deps:
	@missing=$$(for p in $(DEB_DEPS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends $$missing >/dev/null; \
	fi

lint:
	$(PYTHON) -m flake8 lib tests bench demo
	$(PYTHON) -m flake8 --filename='*' bench/failover bench/load bench/footprint bench/beat bench/agents bench/uplink bench/reject demo/run
	$(PYTHON) -m flake8 --filename='*' --extend-ignore=E702 bin  # two-line launchers

# On CI, PIDs are not reused within a run (pid_max 32768 wraps every few minutes of
# namespace tests; a signal sent by PID must never reach a newcomer).
test:
	@if [ -n "$$CI" ] && [ "$$(cat /proc/sys/kernel/pid_max)" -lt 4194304 ]; then \
		sysctl -q -w kernel.pid_max=4194304 || true; fi
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

check: deps lint test

demo: deps
	$(PYTHON) demo/run

deb: deps deb-deps
	@# Debian's own tools: not pyenv's python3 nor this tree's PYTHONPATH
	env -u PYTHONPATH PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b --post-clean
	mkdir -p dist && mv ../hb_*.deb ../hb_*.buildinfo ../hb_*.changes dist/

clean:
	rm -rf build dist .pybuild lib/*.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
