# Two entry points on a fresh clone, each creating the venv it needs:
#   make demo   - install edgehar with its LiteRT runtime (no torch) and run the live demo on
#                 the default bundle shipped in the package
#   make test   - install edgehar with test tools (+ xvfb, xdotool, chromium, gcc) and run the test suite
PYTHON ?= python3
VENV ?= .venv
DEMO_ARGS ?= --seconds 60 --json demo.jsonl
# Which OpenCV the venv gets: gui (opencv-python, with its window), headless
# (opencv-python-headless: no window, no X/GL libraries; Pi OS Lite, servers) or none (no
# pip OpenCV: bring your own cv2; a Jetson keeps JetPack's, docs/platform-notes.md "Boards").
# gui by default: the demo opens its window wherever a display answers (and falls back to
# the terminal view where none does), and the window tests need it.
OPENCV ?= gui

.PHONY: demo test gui-test-tools c-test-tools bundles clean

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

# The window tests open OpenCV's real window on a virtual X display (Debian's xvfb) and
# press its keys (xdotool); the --serve test drives the page in Debian's chromium. Installed
# here when missing (CI runs as root on Debian). Each entry: command:package.
GUI_TEST_TOOLS = Xvfb:xvfb xdotool:xdotool chromium:chromium
gui-test-tools:
	@missing=""; for tool in $(GUI_TEST_TOOLS); do command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "make test: the window and browser tests need the Debian packages$$missing and there is no apt-get here: install them, then rerun" >&2; exit 1; fi; \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make test: the window and browser tests need$$missing: run 'sudo apt-get install -y$$missing' (not root, so not installing them)" >&2; exit 1; fi; \
	  echo "make test: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi

# The reference firmware's tests build its C (firmware_bridge/firmware/) with the system
# compilers (C, and C++ for the header's C++ check); gcc and g++ are installed here when
# missing (CI runs as root on Debian).
c-test-tools:
	@if ! command -v cc >/dev/null || ! command -v c++ >/dev/null; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "make test: the firmware tests need C and C++ compilers (gcc, g++) and there is no apt-get here: install one, then rerun" >&2; exit 1; fi; \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make test: the firmware tests need C and C++ compilers: run 'sudo apt-get install -y gcc g++' (not root, so not installing them)" >&2; exit 1; fi; \
	  echo "make test: installing gcc and g++ (no cc or c++ found)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc g++ >/dev/null || exit 1; \
	fi

test: $(VENV)/.dev gui-test-tools c-test-tools
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
