#!/bin/sh
# A stand-in for a long job: prints progress, reports a heartbeat to tend
# when it runs under `--heartbeat-timeout`, and starts a helper process of
# its own (which tend ends with it). EPOCHS and EPOCH_SECONDS shorten it.
epochs=${EPOCHS:-10}
pause=${EPOCH_SECONDS:-3}
sleep 100000 &   # a helper that would outlive a careless supervisor
i=1
while [ "$i" -le "$epochs" ]; do
    echo "epoch $i/$epochs: loss $(( 1000 / i ))"
    if [ -n "$TEND_EXECUTION_ID" ]; then
        tend heartbeat --progress "epoch $i/$epochs" 2>/dev/null || true
    fi
    sleep "$pause"
    i=$((i + 1))
done
echo "done"
