-- One database per service (DESIGN.md section 2: a service never reads another
-- service's tables). Run once by the postgres image's entrypoint, as the
-- POSTGRES_USER superuser, on an empty data directory; the databases are owned
-- by that user. Later starts with an existing volume skip this file.
CREATE DATABASE contacts;
CREATE DATABASE sales;
CREATE DATABASE marketing;
CREATE DATABASE support;
CREATE DATABASE analytics;
