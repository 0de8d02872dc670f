# Two entry points on a fresh clone, each creating the venv it needs:
#   make demo   - install edgehar with its LiteRT runtime (no torch) and run the live demo on
#                 the default bundle shipped in the package
#   make test   - install edgehar with test tools (+ xvfb, xdotool, chromium, gcc, mosquitto) and run the test suite
PYTHON ?= python3
VENV ?= .venv
DEMO_ARGS ?= --seconds 60 --json demo.jsonl
# Which OpenCV the venv gets: gui (opencv-python, with its window), headless
# (opencv-python-headless: no window, no X/GL libraries; Pi OS Lite, servers) or none (no
# pip OpenCV: bring your own cv2; a Jetson keeps JetPack's, docs/platform-notes.md "Boards").
# gui by default: the demo opens its window wherever a display answers (and falls back to
# the terminal view where none does), and the window tests need it.
OPENCV ?= gui

.PHONY: demo test test-tools bundles arm64-check clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

OPENCV_WHEEL_gui = opencv-python
OPENCV_WHEEL_headless = opencv-python-headless
OPENCV_WHEEL_none =
ifeq ($(filter $(OPENCV),gui headless none),)
$(error OPENCV=$(OPENCV): expected gui, headless or none)
endif
OPENCV_EXTRA = $(if $(OPENCV_WHEEL_$(OPENCV)),$(comma)$(OPENCV))
comma = ,

# The OpenCV the venv holds, marked by .opencv-gui / -headless / -none. Both wheels install
# the same cv2 package, so a venv that holds the other one drops both wheels (and the cv2
# files they share) and the install that follows puts the chosen one back whole; a changed
# choice is newer than the install stamps below, which then install again.
$(VENV)/.opencv-$(OPENCV): | $(VENV)/bin/python
	@for wheel in opencv-python opencv-python-headless; do \
	  if [ "$$wheel" != "$(OPENCV_WHEEL_$(OPENCV))" ] && $(VENV)/bin/pip show --quiet $$wheel >/dev/null 2>&1; then \
	    echo "make: OPENCV=$(OPENCV): removing $$wheel from $(VENV)"; \
	    $(VENV)/bin/pip uninstall --quiet -y opencv-python opencv-python-headless; break; fi; done
	rm -f $(VENV)/.opencv-*
	touch $@

# The demo needs no torch: it runs the default bundle shipped in the package on LiteRT.
$(VENV)/.litert: pyproject.toml $(VENV)/.opencv-$(OPENCV) | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[litert$(OPENCV_EXTRA)]'
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.opencv-$(OPENCV) | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[dev$(OPENCV_EXTRA)]'
	touch $@

demo: $(VENV)/.litert
	$(VENV)/bin/edgehar demo $(DEMO_ARGS)

# The default bundles shipped in the package (edgehar/bundles/): the default MMTSA
# trained by the project's own command (default config and seed), exported to LiteRT
# and ExecuTorch int8. About 10 minutes; commit what it writes.
SHIPPED = edgehar/bundles/default-mmtsa-v1
bundles: $(VENV)/.dev
	rm -rf runs/default-mmtsa $(SHIPPED)
	$(VENV)/bin/edgehar train --out runs/default-mmtsa
	$(VENV)/bin/edgehar export runs/default-mmtsa/bundle --format litert --precision int8 --out $(SHIPPED)/litert-int8
	$(VENV)/bin/edgehar export runs/default-mmtsa/bundle --format executorch --precision int8 --out $(SHIPPED)/executorch-int8

# aarch64, proven (docs/arm64.md): an arm64 Debian bookworm rootfs under QEMU (built once,
# cached in ~/.cache/edgehar/arm64-rootfs), the deploy-only install from wheels, the demo
# for 20 s and the shipped LiteRT bundle against this machine on the same inputs. Root on
# Debian (it apt-get installs debootstrap and qemu-user-static); about 15 min the first time.
# Rewrites docs/arm64.json and the result in docs/arm64.md; not part of make test.
arm64-check: $(VENV)/.litert
	$(VENV)/bin/python tools/arm64_check.py

# Programs the tests start for real, installed here when missing (CI runs as root on
# Debian): the window tests open OpenCV's window on a virtual X display (xvfb) and press
# its keys (xdotool); the --serve test drives the page in Debian's chromium; the reference
# firmware's tests build its C (firmware_bridge/firmware/) with the system C and C++
# compilers; the MQTT tests start a real broker (mosquitto; in /usr/sbin, which a
# non-root PATH may lack) and make a TLS certificate for it (openssl). Each entry:
# command:package.
TEST_TOOLS = Xvfb:xvfb xdotool:xdotool chromium:chromium cc:gcc c++:g++ mosquitto:mosquitto openssl:openssl
test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do command -v $${tool%%:*} >/dev/null || [ -x /usr/sbin/$${tool%%:*} ] || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "make test: the tests need the Debian packages$$missing and there is no apt-get here: install them, then rerun" >&2; exit 1; fi; \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make test: the tests need$$missing: run 'sudo apt-get install -y$$missing' (not root, so not installing them)" >&2; exit 1; fi; \
	  echo "make test: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi

test: $(VENV)/.dev test-tools
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
