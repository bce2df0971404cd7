-- wrk script: PUT /profiles/<random id> with a ~1 KiB profile, Bearer key from the environment.
local key = os.getenv("BENCH_API_KEY") or "bench-key"
local filler = string.rep("x", 700)
local body = '{"profile":{"email":"bench@example.com","email_verified":true,"phone_number":"+15555550100",' ..
    '"address":{"formatted":"1 Main St","locality":"Springfield","region":"IL","postal_code":"62701","country":"US"},' ..
    '"custom":{"plan":"pro","seats":12,"ratio":0.75,"tags":["a","b","c"],"note":"' .. filler .. '"}}}'

wrk.method = "PUT"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key

local counter = 0
function setup(thread)
    counter = counter + 1
    thread:set("seed", counter)
end

function init(args)
    math.randomseed(os.time() * 1000 + (seed or 0))
end

function request()
    return wrk.format(nil, "/profiles/bench-" .. math.random(1, 100000000))
end

function done(summary, latency, requests)
    io.write(string.format("BENCH requests=%d non2xx=%d errors=%d p50_us=%d p99_us=%d body_bytes=%d\n",
        summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +
        summary.errors.write + summary.errors.timeout, latency:percentile(50), latency:percentile(99), #body))
end
