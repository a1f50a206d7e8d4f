wrk.method = "GET"
wrk.headers["Accept"] = "application/fhir+json"
