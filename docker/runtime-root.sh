#!/bin/sh
# Run by the Dockerfile's `runtime` stage (a Debian of the target architecture with
# postgresql-client-15 installed): gathers under ROOT the whole file system of the
# final image, which starts from scratch. Only what runs is copied: nas-sync and the
# three PostgreSQL programs it starts (pg_dump, pg_restore, psql: the binaries, not
# Debian's Perl wrappers), each with the shared libraries `ldd` lists for it, the CA
# bundle (HTTPS to Odoo), users and groups, and /tmp.
#   sh runtime-root.sh ROOT
set -eu
root=$1
pgbin=/usr/lib/postgresql/15/bin

mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
# Debian's merged /usr: /lib is a link to usr/lib, and so on. The same links here, so
# a library keeps every path the loader may look it up by.
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"; fi
done

# One file, its links followed, into its real directory under ROOT, keeping its name.
copy() {
  dir=$(cd "$(dirname "$1")" && pwd -P)
  mkdir -p "$root$dir"
  cp -L "$1" "$root$dir/"
}
# A program into /usr/local/bin, with every library it loads (and the loader).
program() {
  cp -L "$1" "$root/usr/local/bin/"
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do copy "$lib"; done
}

program /usr/local/bin/nas-sync
for tool in pg_dump pg_restore psql; do program "$pgbin/$tool"; done

cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
nas-sync:x:10001:10001:nas-sync:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nas-sync:x:10001:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
# The loader's cache, for the copied libraries only.
cp -R /etc/ld.so.conf /etc/ld.so.conf.d "$root/etc/"
ldconfig -r "$root"
