-- wrk: durable create of a small Patient (POST /fhir/Patient; the server assigns the id and
-- returns the stored resource, 201). Every 201 is a committed, synced write (synchronous=FULL;
-- concurrent writes are group-committed).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Accept"] = "application/fhir+json"
wrk.body = '{"resourceType":"Patient","identifier":[{"system":"http://example.org/bench","value":"b1"}],'
        .. '"name":[{"family":"Bench","given":["Wrk"]}],"gender":"female","birthDate":"1970-01-01"}'
