#!/usr/bin/env bash
# Start or stop a private OpenLDAP server (Debian's slapd) for the tests,
# filled with the test directory below.
#   scripts/slapd.sh start DIR PORT   -> prints the LDAP URL when ready
#   scripts/slapd.sh stop DIR
# DIR holds its config, database, log and PID; nothing outside DIR is touched.
#
# The directory (suffix dc=example,dc=org; passwords are "<uid>-password"):
#   uid=ldev,ou=people   Lea Developer   member of cn=devs,ou=groups
#   uid=lops,ou=people   Otto Ops        member of cn=ops,ou=groups
#   uid=lnone,ou=people  Nina Nobody     in no group
#   cn=reader,dc=example,dc=org (password reader-password): a service account
#   for search-then-bind
set -euo pipefail
cmd=$1 L=$2
SUFFIX="dc=example,dc=org"
case $cmd in
start)
    PORT=$3
    mkdir -p "$L/db"
    cat > "$L/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile $L/slapd.pid
argsfile $L/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 104857600
suffix "$SUFFIX"
rootdn "cn=admin,$SUFFIX"
rootpw admin-password
directory $L/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
EOF
    slaptest -f "$L/slapd.conf" -u > "$L/slaptest.log" 2>&1 || {
        cat "$L/slaptest.log" >&2
        exit 1
    }
    slapd -h "ldap://127.0.0.1:$PORT/" -f "$L/slapd.conf" -u root -g root > "$L/slapd.log" 2>&1
    for _ in $(seq 1 100); do
        ldapwhoami -x -H "ldap://127.0.0.1:$PORT" -D "cn=admin,$SUFFIX" -w admin-password \
            > /dev/null 2>&1 && break
        sleep 0.1
    done
    person() { # uid cn sn
        printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n' \
            "$1" "$SUFFIX" "$1" "$2" "$3" "$(slappasswd -s "$1-password")"
    }
    {
        printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n' "$SUFFIX"
        printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$SUFFIX"
        printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$SUFFIX"
        printf 'dn: cn=reader,%s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: %s\n\n' \
            "$SUFFIX" "$(slappasswd -s reader-password)"
        person ldev "Lea Developer" Developer
        person lops "Otto Ops" Ops
        person lnone "Nina Nobody" Nobody
        printf 'dn: cn=devs,ou=groups,%s\nobjectClass: groupOfNames\ncn: devs\nmember: uid=ldev,ou=people,%s\n\n' "$SUFFIX" "$SUFFIX"
        printf 'dn: cn=ops,ou=groups,%s\nobjectClass: groupOfNames\ncn: ops\nmember: uid=lops,ou=people,%s\n\n' "$SUFFIX" "$SUFFIX"
    } > "$L/directory.ldif"
    ldapadd -x -H "ldap://127.0.0.1:$PORT" -D "cn=admin,$SUFFIX" -w admin-password \
        -f "$L/directory.ldif" > "$L/ldapadd.log" 2>&1 || {
        echo "slapd did not take the test directory; see $L/slapd.log and $L/ldapadd.log" >&2
        cat "$L/ldapadd.log" >&2
        exit 1
    }
    # A user binds with its own password.
    ldapwhoami -x -H "ldap://127.0.0.1:$PORT" -D "uid=ldev,ou=people,$SUFFIX" -w ldev-password > /dev/null
    echo "ldap://127.0.0.1:$PORT"
    ;;
stop)
    if [ -s "$L/slapd.pid" ]; then
        pid=$(cat "$L/slapd.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
