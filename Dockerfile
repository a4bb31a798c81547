# One image with every Tavana binary: the all-in-one `tavana`, the gateway and the
# five services. Kubernetes picks the binary with `command` (k8s/base).
#
#   docker build -t tavana .
#
# Build: the pinned toolchain, the locked dependency set, release profile.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

# Run: glibc and CA certificates only, no shell, no package manager, user nonroot
# (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tavana \
     /src/target/release/tavana-gateway \
     /src/target/release/tavana-identity \
     /src/target/release/tavana-guarantee \
     /src/target/release/tavana-credit \
     /src/target/release/tavana-settlement \
     /src/target/release/tavana-merchant-directory \
     /usr/local/bin/
USER nonroot
EXPOSE 8080 50051
CMD ["/usr/local/bin/tavana", "--help"]
