#!/usr/bin/env bash
# nats_permissions.sh over TLS with client certificates (mutual TLS).
PERM_TLS=1 source "$(dirname "$0")/nats_permissions.sh"
