-- One database per service on the shared server (each service owns its data).
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE shipping;
CREATE DATABASE carrier;
CREATE DATABASE observer;
