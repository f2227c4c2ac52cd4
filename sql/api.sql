SELECT twocache_get('a', 'SELECT 1');
