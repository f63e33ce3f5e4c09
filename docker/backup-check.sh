#!/bin/sh
# Health check of the compose backup profile: healthy while the newest
# /backups/nas-sync-*.dump is younger than BACKUP_EVERY_HOURS plus one hour (time for
# the dump itself). Prints the newest backup and its age either way.
set -eu
every=$(( ${BACKUP_EVERY_HOURS:-24} * 3600 ))
newest=$(ls -1t /backups/nas-sync-*.dump 2>/dev/null | head -n 1 || true)
if [ -z "$newest" ]; then
  echo "no backup yet in /backups"
  exit 1
fi
age=$(( $(date +%s) - $(stat -c %Y "$newest") ))
echo "newest backup: $newest, $(( age / 60 )) minutes old"
[ "$age" -le $(( every + 3600 )) ]
