.PHONY: run test setup setup-dev
run:            ## set up .venv and run the whole recipe on the built-in world (preset tiny)
	scripts/setup.sh && .venv/bin/rlhfkit run
test:           ## set up .venv with test extras (+ Debian chromium) and run the tests
	scripts/setup.sh dev && scripts/test.sh
