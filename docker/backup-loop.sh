#!/bin/sh
# The compose backup profile: `nas-sync backup` every BACKUP_EVERY_HOURS hours into
# /backups, keeping the BACKUP_KEEP newest dumps. Dumps hold every row and the users'
# password hashes: they are readable by their owner only (nas-sync writes them 0600;
# the umask covers anything else made here).
set -eu
umask 077
every=$(( ${BACKUP_EVERY_HOURS:-24} * 3600 ))
keep=${BACKUP_KEEP:-14}
while true; do
  file="/backups/nas-sync-$(date -u +%Y%m%dT%H%M%SZ).dump"
  if nas-sync backup --output "$file"; then
    ls -1t /backups/nas-sync-*.dump 2>/dev/null | tail -n +$((keep + 1)) | while read -r old; do rm -f -- "$old"; done
  else
    rm -f /backups/*.partial
    echo "backup failed; retrying in 10 minutes" >&2
    sleep 600
    continue
  fi
  sleep "$every"
done
