# hb — make demo | make check | make deb
PYTHON  = /usr/bin/python3
export PYTHONPATH := $(CURDIR)/lib
export PATH := $(CURDIR)/bin:$(PATH)

# Debian packages the code, the demo, the tests and the packaging need.
RUN_DEPS  = python3-serial python3-pyroute2 python3-docopt python3-daemon iproute2
DEMO_DEPS = $(RUN_DEPS) socat
TEST_DEPS = python3-pytest python3-pytest-timeout python3-hypothesis python3-aiosmtpd flake8 socat \
            iputils-ping tcpdump procps psmisc util-linux heartbeat resource-agents \
            keepalived ucarp stress-ng python3-matplotlib nftables time logrotate \
            corosync pacemaker pacemaker-cli-utils debootstrap $(DEB_DEPS)
DEB_DEPS  = debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
            lintian devscripts build-essential fakeroot
# Daemons among them that the tests run by themselves, never as services.
PEER_DAEMONS = heartbeat keepalived ucarp corosync pacemaker

.PHONY: deps demo-deps deb-deps check test lint demo deb bench clean

# Install what is missing, and only that.  A service already on this machine is left
# as it is (running or not).  A package installed here starts no service (our own
# policy-rc.d during our apt-get, an existing one put back after), and those of PEER_DAEMONS that we installed are also disabled
# at boot; .cache/installed-by-make records what we installed.
define install
	@missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	  done); \
	[ -z "$$missing" ] && exit 0; \
	echo "installing:" $$missing; \
	rc=/usr/sbin/policy-rc.d; \
	if [ -e $$rc ]; then mv $$rc $$rc.make-saved; fi; \
	trap 'rm -f $$rc; if [ -e $$rc.make-saved ]; then mv $$rc.make-saved $$rc; fi' EXIT INT TERM; \
	printf '#!/bin/sh\n# make: no service of a package it installs starts\nexit 101\n' > $$rc; \
	chmod 755 $$rc; \
	apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	  --no-install-recommends $$missing >/dev/null || exit 1; \
	mkdir -p .cache && for p in $$missing; do echo $$p >> .cache/installed-by-make; done; \
	for p in $$missing; do case " $(PEER_DAEMONS) " in *" $$p "*) \
	  echo "$$p: installed as a test peer, disabled as a service"; \
	  if [ -d /run/systemd/system ]; then systemctl disable -q $$p >/dev/null 2>&1; fi; \
	  update-rc.d $$p disable >/dev/null 2>&1; \
	esac; done; true
endef

deps:
	$(call install,$(RUN_DEPS) $(TEST_DEPS))

demo-deps:
	$(call install,$(DEMO_DEPS))

deb-deps:
	$(call install,$(DEB_DEPS) $(RUN_DEPS) python3-pytest python3-hypothesis)

lint:
	$(PYTHON) -m flake8 lib tests bench demo
	$(PYTHON) -m flake8 --filename='*' bench/failover bench/load bench/footprint bench/beat bench/agents bench/uplink bench/reject bench/wake demo/run
	$(PYTHON) -m flake8 --filename='*' --extend-ignore=E702 bin  # two-line launchers

# On CI, PIDs are not reused within a run (pid_max 32768 wraps every few minutes of
# namespace tests; a signal sent by PID must never reach a newcomer).
test:
	@if [ -n "$$CI" ] && [ "$$(cat /proc/sys/kernel/pid_max)" -lt 4194304 ]; then \
		sysctl -q -w kernel.pid_max=4194304 || true; fi
	@# Three runs side by side: the namespace scenarios mostly wait on timers (the
	@# Heartbeat ones in a run of their own), the rest mostly computes; each prints its
	@# own summary, and all must pass.
	@mkdir -p .cache; \
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=5 \
		$$(ls tests/e2e/test_*.py | grep -v '/test_5') > .cache/e2e.log 2>&1 & e2e=$$!; \
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=5 tests/e2e/test_5*.py \
		> .cache/e2e-heartbeat.log 2>&1 & hbt=$$!; \
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=5 tests/unit tests/cmd tests/pkg; \
	rest=$$?; wait $$e2e; e2e_rc=$$?; wait $$hbt; hbt_rc=$$?; \
	echo "== tests/e2e but the Heartbeat ones (run beside the above) =="; cat .cache/e2e.log; \
	echo "== tests/e2e/test_5* with Heartbeat 3.0.6 (run beside the above) =="; \
	cat .cache/e2e-heartbeat.log; \
	echo "unit, cmd, pkg: exit $$rest; e2e: exit $$e2e_rc; e2e with Heartbeat: exit $$hbt_rc"; \
	[ $$rest -eq 0 ] && [ $$e2e_rc -eq 0 ] && [ $$hbt_rc -eq 0 ]

check: deps lint test

demo: demo-deps
	$(PYTHON) demo/run

deb: deb-deps
	@# Debian's own tools: not pyenv's python3 nor this tree's PYTHONPATH
	env -u PYTHONPATH PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b --post-clean
	mkdir -p dist && mv ../hb_*.deb ../hb_*.buildinfo ../hb_*.changes dist/

clean:
	rm -rf build dist .pybuild lib/*.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
