-- wrk: read one Patient by id (the URL is given on the command line), as a FHIR client would ask.
wrk.method = "GET"
wrk.headers["Accept"] = "application/fhir+json"
