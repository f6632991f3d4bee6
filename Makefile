.PHONY: test run lint fmt
test:
	scripts/test
run:
	cargo run --release --bin photos
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$${PHOTOS_TOOLS_DIR:-$$HOME/.cache/photos/tools}/node_modules/.bin/buf lint proto
fmt:
	cargo fmt --all
