#!/bin/sh
# docker-compose.yml's 'acls' job: runs the kafka-acls commands 'choreo topics acls' printed
# (the 'topics' job wrote them to /acls/acls.sh) as the admin.
set -eu
/etc/kafka/secure/admin-properties.sh > /tmp/admin.properties
PATH=/opt/kafka/bin:$PATH sh /acls/acls.sh
