# Two commands: `make run` (everything up, embedded defaults) and `make test` (the whole suite).
# DATABASE_URL, REDIS_URL and BALANCE_URL switch to PostgreSQL, a real broker and a real Balance.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test venv lint check messages soak soak-ci clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	@bash scripts/run.sh

test: venv
	CELERY_TASK_ALWAYS_EAGER=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check --no-cache .

check: venv lint
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

# The console's Russian catalog (locale/ru): collect new strings, translate them in django.po, then compile the .mo
# that is committed with it. tests/support/test_i18n.py fails while a message is untranslated or fuzzy.
MESSAGES_IGNORE := --ignore=.venv --ignore=tests --ignore=soak --ignore=bench --ignore=scripts
messages: venv
	$(PY) manage.py makemessages -l ru --no-obsolete $(MESSAGES_IGNORE)
	$(PY) manage.py compilemessages -l ru $(MESSAGES_IGNORE)

# The fault-injection soak (soak/run.py; docs/reliability.md): `SEED=42 DURATION=300 make soak`. Without SEED a new
# seed is drawn and printed; a failing run prints the command that replays it. `soak-ci` is the short CI form.
DURATION ?= 300
soak: venv
	$(PY) -m soak.run $(if $(SEED),--seed $(SEED)) --duration $(DURATION)

soak-ci: venv
	$(PY) -m soak.run --seed $(or $(SEED),20240611) --duration 60 --clients 3 --drain-timeout 90 --db disbalance_soak_ci

clean:
	rm -rf .run db.sqlite3 staticfiles
