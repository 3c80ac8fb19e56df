import sys
from work import work
sys.stdout.write(work(sys.stdin.read()))
