-- PUT the same Patient over and over (no If-Match): every 200 is a new version. The id comes from
-- the URL's last segment.
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/fhir+json"
local id = wrk.path:match("([^/]+)$")
wrk.body = '{"resourceType":"Patient","id":"' .. id .. '","name":[{"family":"Smith","given":["Updated"]}],"gender":"male"}'
