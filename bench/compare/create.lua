wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = '{"resourceType":"Patient","identifier":[{"system":"http://example.org/bench","value":"b1"}],'
        .. '"name":[{"family":"Bench","given":["Wrk"]}],"gender":"female","birthDate":"1970-01-01"}'
